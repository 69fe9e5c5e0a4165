"""The course as a reader meets it, in a real browser (headless Chromium driven by Playwright).

* JupyterLab on a free localhost port opens chapters 01 and 02 (copies: nothing in the repository is written):
  neither is marked modified on open and no dialog or notification covers it; Run All runs every cell without
  an error; a slider moved by the keyboard redraws the widget's figure.
* One page of the website (make book BOOK_MATHJAX=local) and one slide deck (make slides): the equations are
  typeset by MathJax without a TeX error, no `$$` is left in the text, and every figure has loaded.
* Nothing is fetched from outside this machine: every request to another host is aborted and fails the test.

Marked `browser`: skipped where Chromium (Debian's /usr/bin/chromium, or $COURSE_CHROMIUM) or the playwright
package is missing; Playwright never downloads a browser here. Screenshots go to build/test-artifacts/ (or
$COURSE_ARTIFACTS). Every server is started here and stopped by its process id.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("COURSE_ARTIFACTS", REPO / "build" / "test-artifacts"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
NODE_MODULES = REPO / "build" / "web" / "node_modules"
# Console errors of jupyter-book 1.x's theme that change nothing on the page: sphinx-thebe's settings script is
# included twice (the second `const` declaration fails), and pydata-sphinx-theme reports an unset theme mode.
BOOK_CONSOLE_NOISE = {"Identifier 'THEBE_JS_URL' has already been declared",
                      "Got invalid theme mode: . Resetting to auto."}

# make test-browser (and so CI) sets COURSE_NO_SKIP=1: there, a missing prerequisite fails instead of skipping.
REQUIRED = os.environ.get("COURSE_NO_SKIP") == "1"

pytestmark = pytest.mark.browser


def _skip(reason: str):
    if REQUIRED:
        pytest.fail(f"COURSE_NO_SKIP=1 but {reason}")
    pytest.skip(reason)


def _need_browser():
    if not CHROMIUM.exists():
        _skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set COURSE_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _skip("the playwright package is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"no answer from {url} within {seconds} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server we started, by its process id, then whatever it started (its process group, e.g. kernels)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group is the server's own (start_new_session=True)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def _server(argv: list[str], url: str, log: Path, env: dict | None = None, cwd: Path | None = None):
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
        try:
            _wait_http(url, proc)
            yield proc
        finally:
            _stop(proc)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page that aborts every request leaving this machine and records console errors."""

    def __init__(self, browser, width=1400, height=900):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.external: list[str] = []
        self.errors: list[str] = []
        self.page.route("**/*", self._route)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _route(self, route):
        url = urlparse(route.request.url)
        if url.scheme in ("data", "blob", "file", "about") or url.hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.abort()

    def close(self):
        self.context.close()


# ------------------------------------------------------------------------------------------------ JupyterLab
@pytest.fixture(scope="module")
def lab(tmp_path_factory, artifacts):
    _need_browser()
    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    work.mkdir()
    for name in ("01_elbo.ipynb", "02_reparameterization.ipynb"):
        shutil.copy2(REPO / "chapters" / name, work / name)
    port, token = _free_port(), "course-browser-test"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GVLIB_QUIET="1",
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), JUPYTER_CONFIG_DIR=str(root / "config"))
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
            f"--LabApp.user_settings_dir={root / 'settings'}", f"--LabApp.workspaces_dir={root / 'workspaces'}",
            "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    base = f"http://127.0.0.1:{port}"
    with _server(argv, f"{base}/api/status?token={token}", artifacts / "jupyterlab.log", env=env) as proc:
        original = {n: (REPO / "chapters" / n).read_bytes() for n in ("01_elbo.ipynb", "02_reparameterization.ipynb")}
        yield {"base": base, "token": token, "work": work, "pid": proc.pid, "original": original}


def _lab_state(page) -> dict:
    return page.evaluate("""() => {
      const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
      const cells = nb ? [...nb.querySelectorAll('.jp-CodeCell')] : [];
      const prompts = cells.map(c => (c.querySelector('.jp-InputPrompt') || {}).textContent || '');
      const errors = nb ? [...nb.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
          .map(e => e.textContent).filter(t => /Error|Traceback/.test(t)) : [];
      const visible = el => el.offsetParent !== null;
      return {
        code_cells: cells.length,
        numbered: prompts.filter(p => /\\[\\d+\\]/.test(p)).length,
        running: prompts.filter(p => p.includes('*')).length,
        errors: errors,
        dirty: document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty').length,
        dialogs: [...document.querySelectorAll('.jp-Dialog')].filter(visible).length,
        toasts: [...document.querySelectorAll('.Toastify__toast')].filter(visible).map(t => t.textContent),
      };
    }""")


def _figure_of(interact) -> str:
    return interact.evaluate("el => [...el.querySelectorAll('img')].map(i => i.src.length + ':' + i.src.slice(-64)).join('|')")


IDLE = ("() => { const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');"
        " return s && s.getAttribute('data-status') === 'idle'; }")


def _settled_figure(page, interact, seconds: float = 60) -> str:
    """The widget's figure once the kernel is idle and the figure has stayed the same for a second."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        page.wait_for_function(IDLE, timeout=seconds * 1000)
        now = _figure_of(interact)
        if now and now == last:
            return now
        last = now
        page.wait_for_timeout(1000)
    raise AssertionError("the widget's figure did not settle")


@pytest.mark.parametrize("name", ["01_elbo.ipynb", "02_reparameterization.ipynb"])
def test_jupyterlab_opens_runs_and_the_slider_redraws(browser, lab, artifacts, name):
    view = Page(browser)
    page = view.page
    try:
        # a workspace of its own per notebook, so the other chapter's tab is not restored beside it
        page.goto(f"{lab['base']}/lab/workspaces/test-{name[:2]}/tree/{name}?reset&token={lab['token']}",
                  wait_until="domcontentloaded")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
        # the kernel is up when the toolbar's status says so
        page.wait_for_function(IDLE, timeout=60_000)
        page.wait_for_timeout(1500)  # anything JupyterLab would change on open has happened by now
        state = _lab_state(page)
        page.screenshot(path=str(artifacts / f"lab-{name[:2]}-opened.png"))
        assert state["dirty"] == 0, f"{name} is marked modified as soon as it is opened"
        assert state["dialogs"] == 0 and state["toasts"] == [], f"a pop-up covers {name}: {state}"

        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        deadline = time.monotonic() + 120
        while True:
            state = _lab_state(page)
            assert not state["errors"], f"{name}: a cell failed: {state['errors'][0][-800:]}"
            if state["code_cells"] and state["numbered"] == state["code_cells"] and state["running"] == 0:
                break
            assert time.monotonic() < deadline, f"{name}: Run All did not finish in 120 s: {state}"
            page.wait_for_timeout(500)

        # running changed the notebook, and the tab says so: the check on open above could have failed
        page.wait_for_function("() => document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty').length === 1",
                               timeout=30_000)
        interact = page.locator(".widget-interact").first
        interact.wait_for(timeout=30_000)
        interact.locator("img").first.wait_for(timeout=30_000)
        before = _settled_figure(page, interact)
        handle = interact.locator(".widget-slider .noUi-handle, .widget-slider [role=slider]").first
        handle.scroll_into_view_if_needed()
        readout = interact.locator(".widget-readout").first.inner_text()
        handle.focus()
        for _ in range(4):
            page.keyboard.press("ArrowRight")
        assert interact.locator(".widget-readout").first.inner_text() != readout, "the slider did not move"
        after = _settled_figure(page, interact)
        assert after != before, "the widget's figure did not change when the slider moved"
        interact.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"lab-{name[:2]}-slider-moved.png"))
        assert view.external == [], f"JupyterLab asked for outside resources: {view.external[:5]}"
        assert view.errors == [], f"console errors in JupyterLab: {view.errors[:3]}"
        assert (REPO / "chapters" / name).read_bytes() == lab["original"][name], "the repository's notebook changed"
    finally:
        (artifacts / f"lab-{name[:2]}-console.json").write_text(json.dumps(view.errors, indent=1))
        view.close()


# ------------------------------------------------------------------------------------------------ website, slides
def _static_server(folder: Path, artifacts: Path, name: str):
    port = _free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)]
    return _server(argv, f"http://127.0.0.1:{port}/", artifacts / f"{name}.log"), f"http://127.0.0.1:{port}"


def _book_html(tmp_path_factory) -> Path:
    """The built website with a local MathJax: build/book's if it has one, else a fresh build."""
    built = REPO / "build" / "book" / "_build" / "html"
    page = built / "chapters" / "01_elbo.html"
    if page.exists() and "_static/mathjax/tex-mml-chtml.js" in page.read_text(encoding="utf-8"):
        return built
    try:
        import jupyter_book  # noqa: F401
    except ImportError:
        _skip("jupyter-book is not installed (make docs-install)")
    if not (NODE_MODULES / "mathjax").is_dir():
        _skip("no local MathJax (make web-assets)")
    from coursekit.book import build

    return build(REPO, tmp_path_factory.mktemp("book"), mathjax="local", web=NODE_MODULES)


MATH_STATE = """(root) => {
  const scope = root ? document.querySelector(root) : document;
  const paragraphs = [...scope.querySelectorAll('p')].map(p => p.innerText);
  const imgs = [...scope.querySelectorAll('img')];
  return {
    typeset: scope.querySelectorAll('mjx-container').length,
    tex_errors: scope.querySelectorAll('mjx-merror').length,
    raw_dollars: paragraphs.filter(t => t.includes('$$')).map(t => t.slice(0, 120)),
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80)),
  };
}"""


def test_a_website_page_renders_equations_and_figures(browser, artifacts, tmp_path_factory):
    _need_browser()
    html = _book_html(tmp_path_factory)
    server, base = _static_server(html, artifacts, "book-server")
    with server:
        view = Page(browser)
        page = view.page
        try:
            page.goto(f"{base}/chapters/01_elbo.html", wait_until="load")
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
            page.evaluate("() => MathJax.startup.promise")
            state = page.evaluate(MATH_STATE, "article")
            assert state["typeset"] > 50, f"MathJax typeset too little: {state}"
            assert state["tex_errors"] == 0, f"TeX errors on the page: {state}"
            assert state["raw_dollars"] == [], f"untypeset $$ in paragraphs: {state['raw_dollars'][:3]}"
            assert state["images"] >= 2 and state["broken"] == [], f"figures missing: {state}"
            page.locator("h2", has_text="The ELBO as an exact identity").first.scroll_into_view_if_needed()
            page.screenshot(path=str(artifacts / "book-01-equations.png"))
            # every other page: typeset without TeX errors, figures loaded, no raw $$ (but where book/allow.yml
            # knowingly lets a cell through until its author fixes it)
            allowed = {e["notebook"].replace(".ipynb", ".html") for e in
                       yaml.safe_load((REPO / "book" / "allow.yml").read_text()) or []}
            for path in sorted(html.glob("chapters/*.html")) + sorted(html.glob("exercises/*.html")):
                rel = path.relative_to(html).as_posix()
                page.goto(f"{base}/{rel}", wait_until="load")
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
                page.evaluate("() => MathJax.startup.promise")
                s = page.evaluate(MATH_STATE, "article")
                assert s["tex_errors"] == 0 and s["broken"] == [], f"{rel}: {s}"
                assert rel in allowed or s["raw_dollars"] == [], f"{rel}: untypeset $$: {s['raw_dollars'][:2]}"
            page.goto(f"{base}/index.html", wait_until="load")
            assert page.locator("table a[href*='chapters/01_elbo']").count() >= 1, "the landing page has no chapter table"
            assert view.external == [], f"the website asked for outside resources: {view.external[:5]}"
            assert set(view.errors) <= BOOK_CONSOLE_NOISE, f"console errors on the website: {view.errors[:3]}"
        finally:
            (artifacts / "book-console.json").write_text(json.dumps(view.errors, indent=1))
            view.close()


def test_a_slide_deck_renders_equations_and_figures(browser, artifacts, tmp_path_factory):
    _need_browser()
    if not (NODE_MODULES / "reveal.js").is_dir():
        _skip("no local reveal.js and MathJax (make web-assets)")
    from coursekit.slides import build

    out = tmp_path_factory.mktemp("slides")
    deck = build([REPO / "chapters" / "01_elbo.ipynb"], out, assets="local", node_modules=NODE_MODULES)[0]
    server, base = _static_server(out, artifacts, "slides-server")
    with server:
        view = Page(browser, 1280, 800)
        page = view.page
        try:
            page.goto(f"{base}/{deck.name}", wait_until="load")
            page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=30_000)
            page.evaluate("() => MathJax.startup.promise")
            state = page.evaluate(MATH_STATE, ".reveal .slides")
            assert state["typeset"] > 50 and state["tex_errors"] == 0, state
            assert state["raw_dollars"] == [], state["raw_dollars"][:3]
            n = page.evaluate("() => Reveal.getTotalSlides()")
            assert n >= 10, f"only {n} slides: the layout did not split the chapter"
            caps = page.evaluate("() => [...document.querySelectorAll('.reveal h1, .reveal h2')]"
                                 ".map(h => getComputedStyle(h).textTransform).filter(t => t !== 'none')")
            assert caps == [], f"headings are transformed ({caps[:3]}): log p(x) would read LOG P(X)"
            # the first (sub-)slide with a figure: it has loaded
            where = page.evaluate("""() => { for (const h of Reveal.getHorizontalSlides()) {
                 const subs = h.querySelectorAll(':scope > section');
                 for (let v = 0; v < Math.max(subs.length, 1); v++) {
                   const s = subs.length ? subs[v] : h;
                   if (s.querySelector('img')) return [Reveal.getIndices(s).h, Reveal.getIndices(s).v || 0]; } }
                 return null; }""")
            assert where is not None, "no slide shows a figure"
            page.evaluate("([h, v]) => Reveal.slide(h, v)", where)
            page.wait_for_timeout(800)
            img = page.evaluate("() => [...Reveal.getCurrentSlide().querySelectorAll('img')].map(i => i.complete && i.naturalWidth)")
            assert img and all(img), f"a figure of slide {where} did not load"
            page.screenshot(path=str(artifacts / "slides-01-figure.png"))
            page.evaluate("() => Reveal.slide(1, 0)")
            page.wait_for_timeout(800)
            assert page.evaluate("() => Reveal.getCurrentSlide().querySelectorAll('mjx-container').length") > 0
            page.screenshot(path=str(artifacts / "slides-01-equations.png"))
            assert view.external == [], f"the deck asked for outside resources: {view.external[:5]}"
            assert view.errors == [], f"console errors in the deck: {view.errors[:3]}"
        finally:
            (artifacts / "slides-console.json").write_text(json.dumps(view.errors, indent=1))
            view.close()


# Every (sub-)slide of every deck, with all its fragments shown: its content within the 1280 x 720 slide, nothing
# inside it scrolling sideways, body text at 28 px or more and code, outputs and tables at 22 px or more.
SLIDE_FIT = """() => {
  const out = [], H = Reveal.getConfig().height, W = Reveal.getConfig().width;
  const hs = Reveal.getHorizontalSlides();
  for (let h = 0; h < hs.length; h++) {
    const n = Math.max(hs[h].querySelectorAll(':scope > section').length, 1);
    for (let v = 0; v < n; v++) {
      Reveal.slide(h, v, 1000);
      const s = Reveal.getCurrentSlide(), bad = [];
      if (s.scrollHeight > H + 2) bad.push('taller: ' + s.scrollHeight + ' px');
      if (s.scrollWidth > W + 2) bad.push('wider: ' + s.scrollWidth + ' px');
      for (const el of s.querySelectorAll('pre, table, mjx-container, img, .jp-OutputArea-output, .jp-Cell'))
        if (el.scrollWidth > el.clientWidth + 2) bad.push(el.tagName + ' scrolls sideways');
      for (const el of s.querySelectorAll('p, li, td, th, pre, code')) {
        if (!el.offsetParent || !el.textContent.trim() || el.closest('aside.notes, mjx-container')) continue;
        const code = !!el.closest('pre, code, table, .jp-OutputArea-output, .jp-InputArea');
        const px = parseFloat(getComputedStyle(el).fontSize);
        if (px < (code ? 22 : 28) - 0.5) { bad.push(el.tagName + ' at ' + px + ' px'); break; }
      }
      if (bad.length) out.push([h, v, bad.slice(0, 3), (s.textContent || '').trim().slice(0, 50)]);
    }
  }
  return {slides: out.length ? out : [], total: Reveal.getTotalSlides()};
}"""


def test_every_slide_of_every_deck_fits_the_screen_at_room_sizes(browser, artifacts, tmp_path_factory):
    _need_browser()
    if not (NODE_MODULES / "reveal.js").is_dir():
        _skip("no local reveal.js and MathJax (make web-assets)")
    from coursekit.slides import build

    out = tmp_path_factory.mktemp("decks")
    decks = build(sorted((REPO / "chapters").glob("[0-9][0-9]*_*.ipynb")), out, assets="local",
                  node_modules=NODE_MODULES)
    server, base = _static_server(out, artifacts, "decks-server")
    failures, counted = {}, {}
    with server:
        view = Page(browser, 1280, 720)
        page = view.page
        try:
            for deck in decks:
                page.goto(f"{base}/{deck.name}", wait_until="load")
                page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=30_000)
                page.evaluate("() => MathJax.startup.promise")
                result = page.evaluate(SLIDE_FIT)
                counted[deck.name] = result["total"]
                if result["slides"]:
                    failures[deck.name] = result["slides"]
            assert view.external == [], f"a deck asked for outside resources: {view.external[:5]}"
        finally:
            (artifacts / "decks-fit.json").write_text(json.dumps({"slides": counted, "failures": failures}, indent=1))
            view.close()
    assert len(decks) >= 17 and all(n >= 10 for n in counted.values()), counted
    assert failures == {}, f"slides that do not fit or read too small (h, v, what, text): {json.dumps(failures)[:1500]}"

