"""Shared helpers of the Streamlit pages: theme and colours (``ui.theme``), what the engine offers
(``ui.catalog``), cached read access to the run store (``ui.store``), the shared selection in session state
(``ui.state``), plot builders (``ui.plots``) and small reusable widgets (``ui.widgets``).

Pages import from here and only read the store and draw; nothing in ``ui`` trains or evaluates a model.
"""
