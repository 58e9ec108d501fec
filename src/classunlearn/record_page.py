"""record.html: the page a person reads about one deletion request (``record.json``,
schema ``classunlearn.record/2``, or an older ``/1``).

Order: what was forgotten, then the verdicts (big, each with its rule and numbers), then the
evidence behind them (where the forgotten class's samples go before and after, next to where
retrained models send them; the U-LiRA ROC against its null; MIA-NN against the references),
then how it was done (method, time), the files with their hashes, the environment and the
command. Only what the record holds is shown: every key but the schema is optional.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from classunlearn.checkpoint import _atomic_write  # noqa: E402
from classunlearn.render import (  # noqa: E402
    Html,
    badge,
    definitions,
    figure_png,
    join,
    page,
    table,
    tag,
)

ATTACK_NAMES = {"accuracy": "Accuracy", "mia_nn": "MIA-NN", "ulira": "U-LiRA"}
ULIRA_VERDICT_NUMBERS = (
    "Numbers: U-LiRA in-sample, the balanced accuracy at the best threshold over both "
    "directions chosen on the same decisions (as in Hayes et al.; it reads above 50 even "
    "for retrained models, hence the null), with its bootstrap interval, and the null's: "
    "the same attack on retrain replayed on the same shadows. Not the cross-fitted "
    "ulira metric below.")
LOG_FLOOR = 1e-3  # zeros clipped to this on the log ROC panel


def _printable(value: object) -> object:
    """The record with every string made valid UTF-8: a file name with undecodable bytes
    (held as lone surrogates) is shown with U+FFFD in their place, never a crash."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # a surrogate no file name decodes to
            return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _num(value: object, digits: int = 3) -> str:
    """A number for a person: 3 significant digits, "—" for none."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else "—"
    return str(value)


def _class(c: object) -> str:
    c = _dict(c)
    name, index = c.get("name"), c.get("index")
    if name is not None and str(name) != str(index):
        return f"class {index} “{name}”"
    return f"class {index}"


def _classes(cs: object) -> str:
    return ", ".join(_class(c) for c in _list(cs)) or "—"


# ------------------------------------------------------------------ parts of the page

def _header(record: dict) -> list[Html]:
    req = _dict(record.get("request"))
    prev = _dict(req.get("previous"))
    forgotten = _classes(req.get("forget_classes"))
    title = "Deletion record" + (f": {forgotten} forgotten" if forgotten != "—" else "")
    verdicts = [v for v in _list(record.get("verdicts")) if isinstance(v, dict)]
    failed = [ATTACK_NAMES.get(v.get("attack"), str(v.get("attack"))) for v in verdicts
              if v.get("passed") is False]
    unsure = [ATTACK_NAMES.get(v.get("attack"), str(v.get("attack"))) for v in verdicts
              if v.get("passed") is None]
    if not verdicts:
        line = "No verdicts in this record."
    elif failed:
        line = f"Found out by {', '.join(failed)}: the model does not look retrained."
    elif unsure:
        line = (f"No attack found it out; {', '.join(unsure)} could not decide "
                "(inconclusive).")
    else:
        line = "Every check passed: the model looks like one retrained without the class."
    return [tag("h1", title), tag("p", tag("strong", line)),
            definitions([("requested", req.get("time")), ("note", req.get("note")),
                         ("forgotten before", _classes(req.get("forgotten_before"))
                          if req.get("forgotten_before") else None),
                         ("previous record", join([tag("code", prev.get("path") or prev.get(
                             "record", "")), " sha256 ", tag("span", prev.get("sha256", ""),
                                                              class_="hash")])
                          if prev else None)])]


def _pct(value: object) -> str:
    """A percentage for a sentence: one decimal, "?" for none."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.1f}%"
    return "?"


def _clip(value: object) -> object:
    """A percentage bound shown within 0..100 (the rule's widened range may pass them)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return min(100.0, max(0.0, float(value)))
    return value


def _fixed(value: object, digits: int = 2) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "?"


def verdict_sentences(v: dict) -> list[str]:
    """What a verdict says, in sentences with the few numbers that decide it (the keys of
    ``numbers`` stay in the card's "all numbers" list, for whoever checks the arithmetic)."""
    n = _dict(v.get("numbers"))
    attack = v.get("attack")
    if attack == "accuracy":
        out = [f"The unlearned model recognises {_pct(n.get('acc_forget'))} of the forgotten "
               "class's training samples; to pass it must lie between "
               f"{_pct(_clip(n.get('acc_forget_low')))} and "
               f"{_pct(_clip(n.get('acc_forget_high')))}, the "
               "range of the models retrained without the class, widened by the tolerance."]
        out.append(f"On the other classes' test samples it scores "
                   f"{_pct(n.get('test_acc_retain'))}; it must keep at least "
                   f"{_pct(n.get('test_acc_retain_low'))} (the retrained models' lowest, less "
                   "the tolerance).")
        return out
    if attack == "mia_nn":
        return [f"The nearest-neighbour attack's score sits {_fixed(n.get('z'))} standard "
                f"deviations from the mean of {_num(n.get('n_references'))} retrained models.",
                f"Below {_num(n.get('z_spread'))} it is within their spread; "
                f"{_num(n.get('z_leak'))} or more (with at least "
                f"{_num(n.get('min_references', 5))} retrained models) is a leak; in between, "
                "or with fewer models, it cannot decide."]
    if attack == "ulira":
        level = n.get("level")
        conf = f"{100 * level:.0f}% " if isinstance(level, int | float) else ""
        return [f"U-LiRA tells this model from retrained ones with an accuracy of "
                f"{_pct(n.get('point'))} ({conf}interval {_pct(n.get('low'))} to "
                f"{_pct(n.get('high'))}).",
                f"The same attack on a model really retrained reads {_pct(n.get('null_point'))} "
                f"({_pct(n.get('null_low'))} to {_pct(n.get('null_high'))}): above 50%, since "
                "the attack has some edge even there. The model is found out only when its "
                "whole interval lies above that."]
    return []


def _verdict_card(v: dict) -> Html:
    attack = ATTACK_NAMES.get(v.get("attack"), str(v.get("attack", "?")))
    if v.get("scope"):
        attack = f"{attack} ({v['scope']})"
    numbers = _dict(v.get("numbers"))
    return tag("div", tag("h3", attack),
               tag("p", badge(v.get("verdict", v.get("outcome", "—")),
                              v.get("passed") if "passed" in v else "na", v.get("rule")),
                   class_="big"),
               *(tag("p", line) for line in verdict_sentences(v)),
               tag("details", tag("summary", "the rule and all numbers"),
                   tag("p", "Rule: ", v.get("rule", "—"), class_="note"),
                   tag("p", ULIRA_VERDICT_NUMBERS, class_="note")
                   if v.get("attack") == "ulira" else "",
                   definitions((k, _num(x)) for k, x in numbers.items()))
               if numbers or v.get("rule") else "", class_="card")


def _verdicts(record: dict) -> list[Html]:
    vs = [v for v in _list(record.get("verdicts")) if isinstance(v, dict)]
    if not vs:
        return []
    return [tag("h2", "Verdicts"), tag("div", *(_verdict_card(v) for v in vs), class_="cards")]


def forget_figure(evidence: dict, forget: list[int]):
    """Grouped bars: per class, the share of the forgotten class's test samples the original,
    the unlearned and retrained models send there. None without any distribution."""
    dist = _dict(evidence.get("forget_distribution"))
    series = [(k, np.asarray(dist[k], dtype=float), c) for k, c in
              (("original", "0.6"), ("unlearned", "C0"), ("retrained", "C2"))
              if _list(dist.get(k))]
    if not series or len({len(s) for _, s, _ in series}) != 1:
        return None
    n = len(series[0][1])
    names = [str(x) for x in _list(evidence.get("class_names"))]
    names = names if len(names) == n else [str(i) for i in range(n)]
    labels = [f"{name}\n(forgotten)" if i in forget else name for i, name in enumerate(names)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * n + 2), 3.6))
    width = 0.8 / len(series)
    x = np.arange(n)
    for j, (label, share, colour) in enumerate(series):
        ax.bar(x + (j - (len(series) - 1) / 2) * width, 100 * share, width, label=label,
               color=colour)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylabel="share of forgotten-class test samples (%)", ylim=(0, 100))
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def ulira_figure(evidence: dict):
    """The U-LiRA ROC of the unlearned model and of its null (the same attack on retrained
    models), linear and log-log. None without a curve."""
    roc = _dict(evidence.get("ulira_roc"))
    curves = [(label, np.asarray(roc.get(f), float), np.asarray(roc.get(t), float), style)
              for label, f, t, style in (
                  ("unlearned", "fpr", "tpr", {"color": "C0", "lw": 1.6}),
                  ("null: retrain replayed", "null_fpr", "null_tpr",
                   {"color": "C2", "lw": 1.2, "ls": "--"}))
              if _list(roc.get(f)) and len(_list(roc.get(f))) == len(_list(roc.get(t)))]
    if not curves:
        return None
    fig, (lin, log) = plt.subplots(1, 2, figsize=(10, 4))
    for label, fpr, tpr, style in curves:
        lin.plot(fpr, tpr, label=label, **style)
        log.plot(np.clip(fpr, LOG_FLOOR, 1), np.clip(tpr, LOG_FLOOR, 1), **style)
    lin.plot([0, 1], [0, 1], "k:", lw=0.8)
    log.plot([LOG_FLOOR, 1], [LOG_FLOOR, 1], "k:", lw=0.8)
    lin.set(xlabel="false-positive rate", ylabel="true-positive rate", title="U-LiRA ROC")
    log.set(xscale="log", yscale="log", xlim=(LOG_FLOOR, 1), ylim=(LOG_FLOOR, 1),
            xlabel=f"false-positive rate (log; 0 shown at {LOG_FLOOR:g})",
            ylabel="true-positive rate (log)", title="low false-positive region")
    lin.legend(fontsize=8, frameon=False)
    return fig


def mia_nn_figure(evidence: dict):
    """The MIA-NN value of the unlearned model against each reference and the references'
    mean ± 2 sd band. None without a value."""
    mia = _dict(evidence.get("mia_nn"))
    value = mia.get("value")
    refs = np.asarray([r for r in _list(mia.get("references")) if isinstance(r, int | float)],
                      dtype=float)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    fig, ax = plt.subplots(figsize=(8, 1.9))
    if refs.size:
        mean, sd = float(refs.mean()), float(refs.std(ddof=1)) if refs.size > 1 else 0.0
        ax.axvspan(mean - 2 * sd, mean + 2 * sd, color="C2", alpha=0.18,
                   label="references: mean ± 2 sd")
        ax.plot(refs, np.zeros_like(refs), "o", color="C2", label="each reference")
    ax.plot([value], [0], "D", color="C3", ms=11, label="unlearned model")
    ax.set_yticks([])
    ax.set(xlabel="MIA-NN value", ylim=(-1, 1))
    ax.legend(fontsize=8, frameon=False, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    ax.spines[["top", "right", "left"]].set_visible(False)
    return fig


def _evidence(record: dict) -> list[Html]:
    ev = _dict(record.get("evidence"))
    forget = [c.get("index") for c in _list(_dict(record.get("request")).get("forget_classes"))
              if isinstance(c, dict)]
    parts: list[Html] = []
    figs = [(forget_figure(ev, forget), "Where the forgotten class's samples go",
             "Per class, the mean share of the forgotten class's test samples that the model "
             "before unlearning (original), after it (unlearned) and models retrained "
             "without the class send there. Unlearned should look like retrained."),
            (ulira_figure(ev), "U-LiRA ROC",
             "How well U-LiRA tells the unlearned model from retrained ones (solid), next to "
             "the same attack on a retrain replay (dashed: what retraining itself reads). "
             "Right: the low false-positive region, log-log."),
            (mia_nn_figure(ev), "MIA-NN against the references",
             "The unlearned model's MIA-NN value (diamond) among the retrained references' "
             "(dots) and their mean ± 2 sd (band).")]
    for fig, title, caption in figs:
        if fig is not None:
            parts += [tag("h3", title), figure_png(fig, title, caption)]
    metrics = {k: _dict(v) for k, v in _dict(record.get("metrics")).items()}
    if metrics:
        parts += [tag("h3", "Metrics"), table(
            ["metric", "value", "references mean", "references sd", "references"],
            [[k, _num(m.get("value")), _num(m.get("references_mean")),
              _num(m.get("references_std")),
              ", ".join(_num(r) for r in _list(m.get("references"))) or "—"]
             for k, m in metrics.items()])]
    return [tag("h2", "Evidence"), *parts] if parts else []


def _method(record: dict) -> list[Html]:
    m = _dict(record.get("method"))
    if not m:
        return []
    params = m.get("params")
    return [tag("h2", "Method"), definitions([
        ("method", tag("strong", m.get("name", "—"))),
        ("parameters", tag("code", json.dumps(params, sort_keys=True)) if params else None),
        ("seed", m.get("seed")),
        ("tuned", tag("code", json.dumps(_dict(m.get("tuned")).get("applied"),
                                         sort_keys=True)) if _dict(m.get("tuned")) else None),
        ("run time", f"{_num(m.get('run_s'))} s (the method alone, in this run)"
         if m.get("run_s") is not None else None),
        # no ratio: the references' time comes from the unit that trained them (another run,
        # process or machine), so the two are not measured alike (issue #26)
        ("retraining time", f"{_num(m.get('retrain_s'))} s per retrained model, as measured "
         "when it was trained (possibly in another run or on another machine, so not "
         "comparable with the run time)" if m.get("retrain_s") is not None else None)])]


def _files(record: dict) -> list[Html]:
    f = _dict(record.get("files"))
    rows = [["data", path, sha] for path, sha in _dict(f.get("data")).items()]
    for role in ("original", "unlearned"):
        if _dict(f.get(role)):
            rows.append([role, f[role].get("path", "—"), f[role].get("sha256", "—")])
    rows += [[f"reference {i + 1}", r.get("path", "—"), r.get("sha256", "—")]
             for i, r in enumerate(_list(f.get("references"))) if isinstance(r, dict)]
    for role, label in (("trainer", "trainer (every reference and shadow trained by it)"),
                        ("init", "init checkpoint (every reference and shadow started from it)")):
        if _dict(f.get(role)):
            rows.append([label, f[role].get("path", "—"), f[role].get("sha256", "—")])
    if not rows:
        return []
    seal = _dict(record.get("seal"))
    return [tag("h2", "Files"),
            tag("p", "Paths are relative to this record's folder; the SHA-256 decides which "
                "file is meant (`classunlearn verify --search DIR` finds moved files).",
                class_="note"),
            table(["role", "path", "sha256"], [
                [role, tag("code", path), tag("span", sha, class_="hash")]
                for role, path, sha in rows]),
            tag("p", "Record seal (SHA-256 of the record's canonical JSON): ",
                tag("span", seal.get("sha256", ""), class_="hash"), class_="note")
            if seal.get("sha256") else ""]


def _environment(record: dict) -> list[Html]:
    env = _dict(record.get("environment"))
    command = record.get("command")
    parts: list[Html] = []
    if env:
        parts += [tag("h2", "Environment"),
                  definitions((k, "—" if v is None else tag("code", v)) for k, v in env.items())]
    if _list(command):
        parts += [tag("h2", "Command"), tag("pre", tag("code", shlex.join(map(str, command))))]
    return parts


def render_record_page(record: dict) -> str:
    """The HTML page of one deletion record (a ``classunlearn.record/2`` or ``/1`` dict)."""
    record = _dict(_printable(record))
    req = _dict(record.get("request"))
    body = [*_header(record), *_verdicts(record), *_evidence(record), *_method(record),
            *_files(record), *_environment(record),
            tag("p", f"schema {record.get('schema', 'unknown')}", class_="note")]
    return page(f"classunlearn record: {_classes(req.get('forget_classes'))}", *body)


def write_record_page(record: dict, path: Path) -> None:
    """Write :func:`render_record_page` of the record to ``path`` (UTF-8), whole or not at
    all."""
    _atomic_write(Path(path), render_record_page(record).encode())
