"""FFN merging: the navigation slot for the second compression method (arXiv 2501.06126).

Its page (window choice, FFN similarity heatmap, prune-vs-merge at equal parameter budget, export) arrives
with its own issue. Until then this page explains the method and lists merge runs already in the store;
it shows no result it did not read from the store.
"""

from __future__ import annotations

import streamlit as st

from ui import state, widgets
from ui import store as ustore

state.init()
widgets.page_header("Feed-forward merging", "A second way to shrink a transformer: instead of removing whole "
                                            "layers, share one feed-forward block across several layers.")

st.info("This page is coming with the feed-forward merging issue. The method is described below; runs made "
        "with it (for example from the command line) are listed at the bottom.", icon="🚧")

st.markdown(
    """
**Merging Feed-Forward Sublayers for Compressed Transformers** (Verma, Murray, Duh; arXiv 2501.06126):

1. **Select** a window of consecutive layers whose feed-forward (FFN) sublayers look alike.
2. **Align**: the neurons of each FFN are permuted to match a reference layer, by correlating their
   activations on calibration text and solving an assignment problem (Hungarian algorithm). A permuted
   FFN computes exactly the same function.
3. **Merge**: average the aligned weights and **tie** them, so every layer in the window uses one shared
   FFN. Attention and layer norms stay per layer.
4. **Fine-tune** (and optionally distil from the teacher).

Merging *k+1* FFNs removes *k* FFNs' worth of parameters, so it can be compared with layer pruning at the
same parameter budget: that comparison, and the FFN similarity heatmap that shows which layers are
mergeable, will live here.
"""
)

merges = ustore.runs(kind="merge")
st.subheader("Merge runs in the store")
if not merges:
    st.caption("None yet.")
else:
    for run in merges:
        st.markdown(f"- {widgets.run_label(run)}")
    st.caption("Their results and models are on Runs & export.")
