"""Shared helpers of the Streamlit pages: colours and display names (``ui.theme``), the pages' cached access
to the run store (``ui.cached_store``), the shared selection in session state (``ui.state``), pandas
transforms for the pages (``ui.tables``), plot builders (``ui.plots``, ``ui.merge_plots``) and small reusable
widgets (``ui.widgets``). What the engine offers is read from its registries directly (``core.signals``,
``core.models.registry``, ``core.data.registry``).

Pages import from here and only read the store and draw; nothing in ``ui`` trains or evaluates a model.
"""
