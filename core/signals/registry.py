"""The registry of layer-importance signals: what each one is, how it is computed, which end is pruned.

One :class:`SignalInfo` per signal, written once here and rendered by the dashboard and the docs (LIT
style: a component describes itself). The functions that compute the values live in
:mod:`core.signals.functions`; the key joins the two. This module imports no torch, so docs and pages can
read it cheaply.

Notation used by every formula: :math:`h^{(\\ell)}_{i,t}\\in\\mathbb R^d` is the output of layer
:math:`\\ell` for token :math:`t` of example :math:`i` (:math:`h^{(\\ell-1)}` its input), :math:`M` the set
of real (non-padding) tokens of the calibration set, :math:`n_i` the real tokens of example :math:`i`,
:math:`N` the number of examples, :math:`A^{(\\ell,k)}` the attention probabilities of head :math:`k`,
:math:`\\theta_\\ell` the layer's parameters and :math:`\\mathcal L` the mean cross-entropy of the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import ConfigError, check_choice

#: the five signal families of arXiv 2501.03273, in display order
FAMILIES: dict[str, str] = {
    "activation": "Activation",
    "mutual_information": "Mutual information",
    "gradient": "Gradient",
    "weight": "Weight",
    "attention": "Attention",
}
BASELINE_FAMILY = "baseline"
DIRECTIONS = ("lowest", "highest")
NEEDS = frozenset({"weights", "forward", "backward", "labels"})
#: "paper": the name comes from arXiv 2501.03273; "our definition": we invented it for this project;
#: "literature": a published baseline from another paper (see ``reference``)
ORIGINS = ("paper", "our definition", "literature")
PAPER = "arXiv 2501.03273 (Strategic Fusion Optimizes Transformer Compression)"
OUR_FORMULA = "The paper names this signal but does not publish its formula: this formula is our definition."


@dataclass(frozen=True)
class SignalInfo:
    """Everything a person (or a page) needs to know about one signal or baseline.

    ``direction`` says which end of the raw value is pruned first; ranking always uses the
    direction-adjusted score (``score = value`` for "lowest", ``-value`` for "highest"), lowest first.
    ``direction_reason`` says why that end: the directions were fixed a priori, in the registry's first version
    (before any oracle, bank or run existed) and are unchanged since; the runs use them. The Paper check also
    learns each signal's direction on the profile bank leave-one-dataset-out, the way fusion learns
    (:mod:`core.studies.fair`), and shows both directions' regret.
    """

    key: str
    display_name: str
    family: str
    formula_latex: str
    direction: str
    intuition: str
    needs: frozenset[str]
    origin: str
    note: str = ""
    reference: str = PAPER
    #: why ``direction`` (every registry entry has one: :func:`_check_registry`)
    direction_reason: str = ""

    def __post_init__(self) -> None:
        o = f"SignalInfo[{self.key!r}]"
        for name in ("key", "display_name", "formula_latex", "intuition", "reference"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{o}.{name} must be a non-empty string, got {value!r}")
        if not self.key.isidentifier():
            raise ConfigError(f"{o}.key must be a Python identifier (it names a table column), got {self.key!r}")
        check_choice(o, "family", self.family, (*FAMILIES, BASELINE_FAMILY))
        check_choice(o, "direction", self.direction, DIRECTIONS)
        check_choice(o, "origin", self.origin, ORIGINS)
        if not isinstance(self.needs, frozenset) or not self.needs <= NEEDS:
            raise ConfigError(f"{o}.needs must be a frozenset drawn from {sorted(NEEDS)}, got {self.needs!r}")
        if "|" in self.formula_latex:
            raise ConfigError(f"{o}.formula_latex must use \\lvert/\\rvert, not '|' (it breaks Markdown tables)")
        if self.formula_latex.count("{") != self.formula_latex.count("}"):
            raise ConfigError(f"{o}.formula_latex has unbalanced braces: {self.formula_latex!r}")

    @property
    def family_display(self) -> str:
        return FAMILIES.get(self.family, "Baseline")

    @property
    def direction_text(self) -> str:
        """The teaching panel's sentence: which end is pruned first, how that was decided and why."""
        if self.key == "random":
            return f"**Pruned first:** a random layer: {self.direction_reason}"
        if self.family == BASELINE_FAMILY:
            return f"**Pruned first:** the layer with the **{self.direction}** value: {self.direction_reason}"
        return (f"**Pruned first:** the layer with the **{self.direction}** value, fixed a priori (in this "
                f"registry's first version, before any measurement; the runs use it) because "
                f"{self.direction_reason} The Paper check also learns the direction on the profile bank "
                "leave-one-dataset-out, as fusion learns, and scores both ends.")

    @property
    def score_column(self) -> str:
        """The table column holding the direction-adjusted score (lower = pruned first)."""
        return f"score__{self.key}"


def _needs(*names: str) -> frozenset[str]:
    return frozenset(names)


_FWD = _needs("forward")
_GRAD = _needs("forward", "backward", "labels")

_ENTRIES = (
    # ----------------------------------------------------------------------------------------- activation
    SignalInfo(
        key="inhibition", display_name="Inhibition", family="activation", origin="paper", note=OUR_FORMULA,
        formula_latex=r"\mathrm{Inh}_\ell=\frac{1}{\lvert M\rvert\,d}\sum_{(i,t)\in M}\sum_{j=1}^{d}"
                      r"h^{(\ell)}_{i,t,j}",
        direction="lowest", needs=_FWD,
        direction_reason="a layer whose outputs sit low on average passes little excitation on to the next layer.",
        intuition="The average signed value of everything the layer outputs. Like an inhibited neuron that "
                  "stays near (or below) its resting level, a layer whose outputs sit low on average passes "
                  "little excitation on to the next layer, so it is removed first.",
    ),
    SignalInfo(
        key="intensity", display_name="Intensity", family="activation", origin="paper", note=OUR_FORMULA,
        formula_latex=r"\mathrm{Int}_\ell=\frac{1}{\lvert M\rvert}\sum_{(i,t)\in M}"
                      r"\lVert h^{(\ell)}_{i,t}\rVert_2",
        direction="lowest", needs=_FWD,
        direction_reason="the quietest layer is assumed to do the least work.",
        intuition="How loudly the layer speaks: the average length of its output vector per token, whatever "
                  "the sign. It plays the role of a neuron's firing rate; the quietest layer goes first.",
    ),
    SignalInfo(
        key="energy", display_name="Energy", family="activation", origin="paper", note=OUR_FORMULA,
        formula_latex=r"E_\ell=\frac{1}{N}\sum_{i=1}^{N}\sum_{t:(i,t)\in M}\lVert h^{(\ell)}_{i,t}\rVert_2^2",
        direction="lowest", needs=_FWD,
        direction_reason="a layer that spends little energy is assumed to do little work.",
        intuition="The total squared activity a layer produces for one sentence (the squared Frobenius norm "
                  "of its output matrix over real tokens). Like the metabolic energy a brain region burns, a "
                  "layer that spends little energy is assumed to do little work.",
    ),
    # --------------------------------------------------------------------------------- mutual information
    SignalInfo(
        key="task_relevance_mi", display_name="Task-Relevance-MI", family="mutual_information",
        origin="paper",
        note=OUR_FORMULA + " Estimator: scikit-learn's k-nearest-neighbour MI (k=3, seeded) of each of the "
             "first k principal components of the masked-mean-pooled output, summed (the components are "
             "uncorrelated, so the sum approximates the joint MI; it can exceed H(y) when several components "
             "carry the same label information).",
        formula_latex=r"\sum_{c=1}^{k}\hat I_{\mathrm{kNN}}\big(z^{(\ell)}_{c};\,y\big),\quad "
                      r"z^{(\ell)}_i=\mathrm{PCA}_k\Big(\frac{1}{n_i}\sum_{t:(i,t)\in M}h^{(\ell)}_{i,t}\Big)",
        direction="lowest", needs=_needs("forward", "labels"),
        direction_reason="a layer whose representation says little about the label carries the least task information.",
        intuition="How much knowing the layer's summary of a sentence tells you about its label. A neuron "
                  "tuned to the stimulus that matters carries task information; a layer whose "
                  "representation says little about the label is the first candidate to drop.",
    ),
    SignalInfo(
        key="redundancy_mi", display_name="Redundancy-MI", family="mutual_information",
        origin="our definition",
        note="Dependence measured by linear CKA (Kornblith et al. 2019) between the layer's input and output "
             "token vectors, a bounded and cheap stand-in for mutual information.",
        formula_latex=r"\mathrm{CKA}(X,Y)=\frac{\lVert \tilde Y^{\top}\tilde X\rVert_F^2}"
                      r"{\lVert \tilde X^{\top}\tilde X\rVert_F\,\lVert \tilde Y^{\top}\tilde Y\rVert_F},\quad "
                      r"X=h^{(\ell-1)}_{M},\ Y=h^{(\ell)}_{M}",
        direction="highest", needs=_FWD,
        direction_reason="a layer whose output is already in its input (CKA near 1) adds the least.",
        intuition="How much of the layer's output is already in its input (1 = a linear re-coding of the "
                  "input, 0 = unrelated). A layer that only echoes what it receives, like a relay neuron "
                  "repeating its input, adds little and is removed first.",
    ),
    # ------------------------------------------------------------------------------------------- gradient
    SignalInfo(
        key="gradient_norm", display_name="Gradient-Norm", family="gradient", origin="our definition",
        formula_latex=r"\big\lVert \nabla_{\theta_\ell}\mathcal L\big\rVert_2",
        direction="lowest", needs=_GRAD,
        direction_reason="weights the task loss barely pulls on are not being used for the task.",
        intuition="How strongly the task loss pulls on the layer's weights, averaged over the calibration "
                  "set. Synapses that receive no error signal are not being used for the task; the layer "
                  "with the weakest pull goes first.",
    ),
    SignalInfo(
        key="gradient_fisher", display_name="Gradient-Fisher", family="gradient", origin="paper",
        note=OUR_FORMULA + " Cheap approximation: per-example gradients are replaced by per-batch gradients, "
             "sum_i ||g_i||^2 ~ ||sum_i g_i||^2 = B^2 ||grad L_b||^2 within each batch (exact for batches of "
             "one; unbiased when per-example gradients are uncorrelated with mean zero, as near a minimum).",
        formula_latex=r"\hat F_\ell=\frac{1}{N}\sum_{b}B_b^{2}\,\big\lVert\nabla_{\theta_\ell}\mathcal L_b"
                      r"\big\rVert_2^2\approx\frac{1}{N}\sum_{i=1}^{N}\big\lVert\nabla_{\theta_\ell}"
                      r"\ell_i\big\rVert_2^2",
        direction="lowest", needs=_GRAD,
        direction_reason="a flat loss surface around the layer's weights means losing them should hurt least.",
        intuition="The empirical Fisher information of the layer's weights: how sharply, example by example, "
                  "the loss reacts to nudging them. Low Fisher means the loss surface is flat there, so "
                  "losing the layer should hurt least.",
    ),
    SignalInfo(
        key="taylor", display_name="Taylor", family="gradient", origin="our definition",
        formula_latex=r"\Big\lvert\sum_{p\in\theta_\ell} g_p\,w_p\Big\rvert,\quad g=\nabla_{\theta}\mathcal L",
        direction="lowest", needs=_GRAD,
        direction_reason="the smallest first-order estimate of the loss change if the layer's weights were zeroed.",
        intuition="A first-order Taylor estimate of how much the loss would change if the layer's weights "
                  "were set to zero, like predicting the deficit of a brain lesion from how the region is "
                  "wired. The smallest predicted damage is pruned first.",
    ),
    # --------------------------------------------------------------------------------------------- weight
    SignalInfo(
        key="weight_magnitude", display_name="Weight-Magnitude", family="weight", origin="our definition",
        note="Over the entries of the layer's weight matrices (2-D parameters); size-normalised as a root "
             "mean square so layers of different width compare.",
        formula_latex=r"\sqrt{\frac{1}{\lvert W_\ell\rvert}\sum_{w\in W_\ell}w^{2}}",
        direction="lowest", needs=_needs("weights"),
        direction_reason="the weakest connections go first, as in magnitude pruning.",
        intuition="The typical strength of the layer's connections. As in synaptic pruning during brain "
                  "development, the weakest connections are the first to go.",
    ),
    SignalInfo(
        key="weight_entropy", display_name="Weight-Entropy", family="weight", origin="paper",
        note=OUR_FORMULA + " Histogram: 256 equal-width bins spanning the layer's own weight range (so the "
             "value depends on the shape of the distribution, not its scale).",
        formula_latex=r"H_\ell=-\sum_{b=1}^{256}p_b\ln p_b,\quad p_b=\frac{\#\{w\in W_\ell:w\in\mathrm{bin}_b\}}"
                      r"{\lvert W_\ell\rvert}",
        direction="lowest", needs=_needs("weights"),
        direction_reason="weights that take few distinct values store little information (an all-zero or constant "
                         "layer has entropy 0), so the layer is closest to a trivial map.",
        intuition="How varied the layer's connection strengths are. Synapses that are all alike carry little "
                  "information, so the layer with the least diverse weights goes first.",
    ),
    # ------------------------------------------------------------------------------------------ attention
    SignalInfo(
        key="attention_entropy", display_name="Attention-Entropy", family="attention",
        origin="our definition",
        note="Mean over heads and real query tokens; each distribution runs over real key tokens (nats).",
        formula_latex=r"\frac{1}{\lvert M\rvert\,K}\sum_{(i,t)\in M}\sum_{k=1}^{K}-\sum_{s}"
                      r"A^{(\ell,k)}_{i,t,s}\ln A^{(\ell,k)}_{i,t,s}",
        direction="highest", needs=_FWD,
        direction_reason="near-uniform attention has learned little selective routing.",
        intuition="How spread out the layer's attention is. Near-uniform attention looks everywhere at once "
                  "and has learned little selective routing, like an unfocused gaze; the most diffuse layer "
                  "is pruned first.",
    ),
    SignalInfo(
        key="attention_weight", display_name="Attention-Weight", family="attention", origin="paper",
        note=OUR_FORMULA + " Mean over heads and real query tokens of the largest attention probability.",
        formula_latex=r"\frac{1}{\lvert M\rvert\,K}\sum_{(i,t)\in M}\sum_{k=1}^{K}\max_{s}"
                      r"A^{(\ell,k)}_{i,t,s}",
        direction="lowest", needs=_FWD,
        direction_reason="heads that focus on no single token pick out little.",
        intuition="How sharply each head focuses on a single token. Focused heads pick out what matters, as "
                  "selective attention does in the brain; the layer with the least focused heads goes first.",
    ),
)

SIGNALS: dict[str, SignalInfo] = {info.key: info for info in _ENTRIES}
#: the twelve signal keys in the order of the paper's families
SIGNAL_KEYS: tuple[str, ...] = tuple(SIGNALS)

BASELINES: dict[str, SignalInfo] = {
    info.key: info
    for info in (
        SignalInfo(
            key="random", display_name="Random", family=BASELINE_FAMILY, origin="our definition",
            formula_latex=r"\pi\sim\mathrm{Uniform}\big(S_L\big)\ \text{(seeded)}",
            direction="lowest", needs=frozenset(),
            direction_reason="no end: a seeded random order, the control (the Paper check scores its expectation over "
                             "the candidates, never one draw).",
            note="A seeded random permutation of the remaining layers.",
            intuition="The control: layers removed in a random order. Any signal worth its cost should beat it.",
        ),
        SignalInfo(
            key="top_down", display_name="Top-down (Poor Man's BERT)", family=BASELINE_FAMILY,
            origin="literature", reference="Sajjad et al., On the Effect of Dropping Layers of Pre-trained "
            "Transformer Models (Poor Man's BERT), arXiv 2004.03844",
            formula_latex=r"\text{prune } \ell=L,\,L-1,\,\dots,\,1",
            direction="highest", needs=frozenset(),
            direction_reason="the published rule of Sajjad et al.: the last remaining layer first.",
            intuition="Always drop the last remaining layer. The top layers are the most specialised to the "
                      "pre-training objective, and dropping them is a strong, data-free rule.",
        ),
        SignalInfo(
            key="block_influence", display_name="Block Influence (ShortGPT)", family=BASELINE_FAMILY,
            origin="literature", reference="Men et al., ShortGPT: Layers in Large Language Models are More "
            "Redundant Than You Expect, arXiv 2403.03853",
            formula_latex=r"\mathrm{BI}_\ell=\frac{1}{\lvert M\rvert}\sum_{(i,t)\in M}\Big(1-\frac{"
                          r"h^{(\ell-1)\top}_{i,t}h^{(\ell)}_{i,t}}{\lVert h^{(\ell-1)}_{i,t}\rVert_2\,"
                          r"\lVert h^{(\ell)}_{i,t}\rVert_2}\Big)",
            direction="lowest", needs=_FWD,
            direction_reason="the published rule of ShortGPT (Men et al.): the layer that turns its input least first.",
            intuition="How much the layer turns each token's vector: one minus the cosine between its input "
                      "and output. A layer that leaves the direction of its input unchanged is removed first.",
        ),
    )
}

#: every key :func:`core.signals.rank_layers` accepts, signals first
STRATEGIES: tuple[str, ...] = SIGNAL_KEYS + tuple(BASELINES)


def get_info(key: str) -> SignalInfo:
    """The registry entry of a signal or baseline; a clear error for anything else."""
    if key in SIGNALS:
        return SIGNALS[key]
    if key in BASELINES:
        return BASELINES[key]
    raise KeyError(f"Unknown signal or baseline {key!r}; choose one of {', '.join(STRATEGIES)}")


def signals_markdown(include_baselines: bool = True) -> str:
    """The registry as a Markdown table (README and docs); formulas as inline ``$...$`` math."""
    rows = ["| family | signal | key | formula | pruned first | needs | origin |",
            "|---|---|---|---|---|---|---|"]
    entries = list(SIGNALS.values()) + (list(BASELINES.values()) if include_baselines else [])
    for info in entries:
        needs = ", ".join(sorted(info.needs)) or "nothing"
        cells = (info.family_display, info.display_name, f"`{info.key}`", f"${info.formula_latex}$",
                 info.direction, needs, info.origin)
        rows.append("| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _check_registry() -> None:
    overlap = set(SIGNALS) & set(BASELINES)
    if overlap:
        raise ConfigError(f"signal and baseline keys overlap: {sorted(overlap)}")
    if len(SIGNALS) != 12:
        raise ConfigError(f"expected the paper's 12 signals, got {len(SIGNALS)}")
    for info in (*SIGNALS.values(), *BASELINES.values()):
        if not isinstance(info.direction_reason, str) or not info.direction_reason.strip():
            raise ConfigError(f"SignalInfo[{info.key!r}].direction_reason must say why the {info.direction} value "
                              f"is pruned first, got {info.direction_reason!r}")


_check_registry()
