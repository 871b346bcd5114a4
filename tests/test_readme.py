import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_and_streaming_equals_one_call():
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    assert scope["rates"].shape == (16, 10)
    spikes = scope["spikes"]
    # the equality below means something only if the neurons fire, at varied times
    assert 0.05 < float(spikes.mean()) < 0.95
    assert not torch.equal(spikes[0], spikes[1])
    assert torch.equal(torch.cat([scope["s1"], scope["s2"]]), spikes)


def test_ci_script_runs_the_readme_test_command():
    readme = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install --quiet -c constraints.txt -e ".[test]"' in ci
    assert "python -m pytest -q -n 2" in ci and "python -m pytest -q -n 2" in readme
