"""report.html is self-contained and renders in a real browser (headless Chromium): every image
loads, no script or console error, and a screenshot of it is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from spikeweave.experiments.figures import plot_bars
from spikeweave.experiments.report import Report, Table

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run does)"
)

PROBE = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const origError = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); origError(...a); };
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = `images=${imgs.length} broken=${bad} errors=${window.__errors.length}`;
  document.body.appendChild(out);
});
</script>
"""


def _report(tmp_path: Path) -> Path:
    fig = plot_bars({"A": [1.0, 1.2], "B": [2.0, 2.1]}, tmp_path / "bars.png", "demo", "s")
    report = Report(
        name="demo",
        title="Demo <experiment> & friends",
        claim="A is faster than B.",
        setup={"seeds": [0, 1]},
        tables=[Table("Times", ["arm", "s"], [["A", 1.1], ["B", 2.05]])],
        figures=[str(fig)],
        verdict="A took 1.1 s, B 2.05 s.",
        held=True,
        notes=["quick"],
    )
    report.write(tmp_path)
    return tmp_path / "report.html"


def test_report_html_is_self_contained_and_escaped(tmp_path):
    html = _report(tmp_path).read_text()
    assert "Demo &lt;experiment&gt; &amp; friends" in html
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', html)
    assert "bars.png" not in re.sub(r"alt=\"[^\"]*\"|<figcaption>[^<]*</figcaption>", "", html)
    assert "<script" not in html  # a report runs no code


@pytest.mark.slow
@needs_chromium
def test_report_renders_in_headless_chromium_with_all_images_and_no_errors(tmp_path):
    page = _report(tmp_path)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "images=1 broken=0 errors=0" in dom, dom[-500:]
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1100,1400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    image = mpimg.imread(shot)
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    assert image[..., :3].std() > 0.05  # text, table and plot, not a blank page
