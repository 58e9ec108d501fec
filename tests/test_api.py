"""The README's Python example, executed as written."""

import re
from pathlib import Path


def test_readme_python_example_runs():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    report = namespace["report"]
    assert report["acc_forget"] < 10 and report["test_acc_retain"] > 90


def test_api_accepts_torch_datasets(digits_models):
    import torch

    import classunlearn as cu

    split, original, refs = digits_models
    d = split.dataset
    train = torch.utils.data.TensorDataset(d.x_train, d.y_train)
    unlearned, record = cu.unlearn(original, train, [3], method="rwft", params={"epochs": 2})
    assert record.method == "rwft" and record.steps > 0
    report = cu.audit(unlearned, train, (d.x_test, d.y_test), [3], references=refs)
    assert {"acc_retain", "acc_forget", "test_acc_retain", "test_acc_forget", "tv"} <= set(report)
