"""`archc render -o model.html`: the page's data against the IR, then the page in a real headless
Chromium (one browser for the module): it draws without console errors, one node per row of
`archc check`, opens and closes composites on click, builds the same DOT as backends/dot.py,
finds nodes, links the table and the diagram both ways, and is not blank, light or dark.

The browser tests skip, saying why, when selenium, chromium or chromedriver is missing
(`make setup` installs them)."""
from __future__ import annotations

import base64
import gzip
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from archcompiler.backends import html
from archcompiler.backends.dot import to_dot
from archcompiler.backends.table import rows
from archcompiler.cli.render import block_graph, render, viewer
from archcompiler.driver import check_file
from archcompiler.tools import browser
from tests.test_render import parse_dot

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "attn_reduction.yaml"
UNET = ROOT / "specs" / "examples" / "unet.yaml"
SEVERAL = ROOT / "tests" / "specs" / "several_outputs.yaml"  # blocks with several outputs


@pytest.fixture(scope="module")
def checked():
    return check_file(str(SPEC))


# --- the page's data, without a browser ---

def test_data_has_every_layer_with_the_check_numbers_and_its_spec_lines(checked):
    data = html.model_data(checked.graph, checked.registry, title="t", totals=checked.totals,
                           sources=html.read_sources(checked.graph, {checked.file: checked.text}))
    expanded = rows(checked.graph, expand=True)
    assert [n["name"] for n in data["nodes"]] == [r["name"] for r in expanded]
    assert [n["flops"] for n in data["nodes"]] == [html.fmt_flops(r["flops"]) for r in expanded]
    stem, trunk = data["nodes"][0], next(n for n in data["nodes"] if n["id"] == "attn.trunk1")
    assert (stem["count"], stem["shape"], stem["source"]["line"]) == ("1,792", "64 x 64 x 64", 9)
    assert stem["source"]["lines"][0].startswith("stem: {type: conv")  # dedented to its key
    # a node of a standard-library block quotes that block's file, key line first
    assert trunk["source"]["file"] == "<stdlib>/soft_attention.yaml" and "trunk1:" in trunk["source"]["lines"][0]
    assert trunk["parent"] == "attn" and trunk["composite"] and trunk["output"] == "add"


def test_page_is_one_offline_file(checked):
    page = viewer(str(SPEC))
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@import|url\(http", page)
    assert page.count("<script") == 3  # the data, Viz.js, the viewer: all inline
    packed = re.search(r'id="archc-viz">(.*?)</script>', page, re.S).group(1)
    assert gzip.decompress(base64.b64decode(packed)) == (html.ASSETS / "viz-global.js").read_bytes()
    assert "attn_reduction" in page.split("</title>")[0]


def _data(page: str) -> dict:
    import json

    return json.loads(re.search(r'<script type="application/json" id="archc-data">(.*?)</script>', page, re.S).group(1))


def test_expand_and_depth_choose_what_the_page_opens_first(checked):
    assert _data(viewer(str(SPEC)))["open"] == []
    assert _data(viewer(str(SPEC), expand=True, depth=0))["open"] == []
    top = [n.name for n in checked.graph.layers() if n.body is not None]
    assert _data(viewer(str(SPEC), expand=True, depth=1))["open"] == top
    everything = _data(viewer(str(SPEC), expand=True))
    assert everything["open"] == [n["id"] for n in everything["nodes"] if n["composite"]] and "attn.trunk1" in everything["open"]


def test_labels_cannot_end_the_script_element(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("archc: 1\nname: tiny\ninput: [3, 8, 8]\nnodes:\n  c: {type: conv, out: 4}  # </script><!--\n")
    page = viewer(str(spec))
    blob = re.search(r'id="archc-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in blob and "</script><!--" in _data(page)["nodes"][0]["source"]["lines"][0]


def test_source_lines_are_the_nodes_whole_entry(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("archc: 1\nname: tiny\ninput: [3, 8, 8]\nnodes:\n  c:\n    type: conv\n\n    out: 4\n\n  r: {type: activation}\n")
    nodes = _data(viewer(str(spec)))["nodes"]
    assert nodes[0]["source"]["line"] == 5 and nodes[0]["source"]["lines"] == ["c:", "  type: conv", "", "  out: 4"]
    assert nodes[1]["source"]["lines"] == ["r: {type: activation}"]


def test_missing_browser_is_a_reason_not_an_error(monkeypatch):
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    assert "chromium" in browser.missing()


def test_cli_writes_html_and_lists_it_among_formats(tmp_path):
    out = tmp_path / "m.html"
    done = subprocess.run([sys.executable, "-m", "archcompiler", "render", str(SPEC), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    bad = subprocess.run([sys.executable, "-m", "archcompiler", "render", str(SPEC), "-o", str(tmp_path / "m.htm")], capture_output=True, text=True)
    assert bad.returncode == 2 and ".html" in bad.stderr


# --- in the browser ---

@pytest.fixture(scope="module")
def driver():
    if (why := browser.missing()) is not None:
        pytest.skip(f"no headless browser: {why}")
    with browser.chromium(1280, 800) as d:
        yield d


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    out = {}
    for name, spec, options in (("attn", SPEC, {}), ("block", None, {"block": "soft_attention"}),
                                ("mobilenet", ROOT / "specs" / "examples" / "mobilenet_v2.yaml", {}),
                                ("unet", UNET, {}), ("unet_up", UNET, {"block": "up"}),
                                ("several", SEVERAL, {}), ("several_fpn", SEVERAL, {"block": "fpn"})):
        out[name] = folder / f"{name}.html"
        render(str(spec) if spec else None, str(out[name]), **options)
    return out


@pytest.fixture
def page(driver, pages):
    """The attn_reduction page, freshly loaded and light; afterwards, the console held no error."""
    browser.set_dark(driver, False)
    browser.open_page(driver, pages["attn"])
    yield driver
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def drawn_ids(d) -> list[str]:
    """The layer nodes on the diagram (not the input and output terminals), in document order."""
    ids = d.execute_script("return [...document.querySelectorAll('#canvas svg g.node')].map(g => g.id.slice(2))")
    return [i for i in ids if i not in ("input", "@output")]


def table_ids(d) -> list[str]:
    return d.execute_script("return [...document.querySelectorAll('#table tbody tr[data-id]')].filter(r => !r.hidden).map(r => r.dataset.id)")


def click_node(d, node_id: str) -> None:
    """A real mouse click on the node (the page lays out again before the click returns)."""
    from selenium.webdriver.common.action_chains import ActionChains

    d.execute_script("archcViewer.center(arguments[0])", node_id)  # pan to it first, as a person would
    el = d.find_element("css selector", f'#canvas svg g.node[id="n:{node_id}"]')
    ActionChains(d).move_to_element(el).click().perform()


def test_collapsed_page_has_one_node_per_check_row(page, checked):
    top = [r["name"] for r in rows(checked.graph)]
    assert sorted(drawn_ids(page)) == sorted(top)
    assert table_ids(page) == top  # the side table lists the same rows, in check's order


def screen_at(d, node_id: str) -> tuple[float, float]:
    return tuple(d.execute_script(
        "const r = document.querySelector(`g.node[id='n:${arguments[0]}']`).getBoundingClientRect(); return [r.left, r.top]", node_id))


def test_click_opens_a_composite_in_place_and_its_head_closes_it(page, checked):
    top = len(rows(checked.graph))
    body = [n.name for n in checked.graph.nodes["attn"].body.layers()]
    page.execute_script("archcViewer.center('attn')")
    before = screen_at(page, "attn")
    click_node(page, "attn")
    assert screen_at(page, "attn") == pytest.approx(before, abs=2)  # in place: the clicked node did not move
    ids = drawn_ids(page)
    assert len(ids) == top + len(body) and {f"attn.{b}" for b in body} <= set(ids)
    assert page.execute_script("return !!document.querySelector('g.cluster[id=\"c:attn\"]')")
    assert table_ids(page)[:3] == ["stem", "attn", "attn.trunk1"]
    click_node(page, "attn.trunk1")  # nested: residual's body inside soft attention's
    assert "attn.trunk1.conv1" in drawn_ids(page)
    click_node(page, "attn")  # the head of the open cluster closes it, and what it holds
    assert len(drawn_ids(page)) == top
    assert page.execute_script("return archcViewer.open.size") == 0


@pytest.mark.parametrize("expand", [False, True])
def test_page_builds_the_dot_of_backends_dot(page, checked, expand):
    """The browser lays out the same nodes, clusters and labelled edges the SVG figures draw."""
    if expand:
        page.execute_script("document.getElementById('expand-all').click()")
    mine = parse_dot(page.execute_script("return archcViewer.dotText()"))
    ours = parse_dot(to_dot(checked.graph, checked.registry, expand=expand))
    assert mine[0] == ours[0]
    assert [c.removeprefix("cluster_") for c in mine[1]] == [c.removeprefix("cluster_") for c in ours[1]]
    assert sorted(mine[2]) == sorted(ours[2])


def test_search_finds_a_node_by_name_and_by_type(page):
    box = page.find_element("id", "search")
    box.send_keys("mask_res2")
    box.send_keys("\n")
    browser.wait_drawn(page, 1)  # revealing attn.mask_res2 opened attn
    assert page.execute_script("return document.querySelector('g.node.selected').id") == "n:attn.mask_res2"
    assert page.find_element("css selector", "#details h2").text == "attn.mask_res2"
    assert page.find_element("id", "found").text == "1 of 1 found"
    box.clear()
    box.send_keys("global_avgpool\n")
    assert page.find_element("css selector", "#details h2").text == "pool"
    assert page.find_element("css selector", "#table tr.selected").get_attribute("data-id") == "pool"


def test_table_and_diagram_select_each_other_and_details_quote_the_spec(page):
    page.find_element("css selector", '#table tr[data-id="stem"]').click()
    assert page.execute_script("return document.querySelector('g.node.selected').id") == "n:stem"
    details = page.find_element("id", "details").text
    assert "conv (conv)" in details and "1,792" in details and "14.156 M" in details
    assert "specs/attn_reduction.yaml:9" in details and "stem:" in details
    click_node(page, "fc")
    assert page.find_element("css selector", "#table tr.selected").get_attribute("data-id") == "fc"
    assert "166,600" in page.find_element("id", "details").text


def transform(d) -> tuple[float, float, float]:
    """(x, y, scale) of the diagram, from its CSS transform."""
    t = d.execute_script("return document.querySelector('#canvas svg').style.transform")
    x, y, k = map(float, re.findall(r"-?[\d.]+", t))
    return x, y, k


def test_pan_and_zoom_with_keyboard_and_mouse(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    canvas = page.find_element("id", "canvas")
    ActionChains(page).move_to_element_with_offset(canvas, -300, 200).click().perform()  # focus, on empty canvas
    ActionChains(page).send_keys("0").perform()  # fit the whole model
    x, y, k = transform(page)
    svg = page.find_element("css selector", "#canvas svg").rect
    box = canvas.rect
    assert svg["height"] <= box["height"] and svg["width"] <= box["width"]
    ActionChains(page).send_keys("+").perform()
    assert transform(page)[2] == pytest.approx(k * 1.25)
    ActionChains(page).send_keys("-", "-", "0").perform()
    assert transform(page) == pytest.approx((x, y, k))
    ActionChains(page).send_keys("\ue012").perform()  # the left arrow pans the view right
    assert transform(page)[0] == pytest.approx(x + 80)
    ActionChains(page).drag_and_drop_by_offset(canvas, 40, 30).perform()
    assert transform(page)[:2] == pytest.approx((x + 120, y + 30))
    ActionChains(page).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -300).perform()
    assert transform(page)[2] > k


def test_hover_shows_a_node_and_leaving_shows_the_selection_again(page):
    from selenium.webdriver.common.action_chains import ActionChains

    page.execute_script("archcViewer.select('stem')")
    ActionChains(page).move_to_element(page.find_element("css selector", 'g.node[id="n:red1"]')).perform()
    assert page.find_element("css selector", "#details h2").text == "red1"
    ActionChains(page).move_to_element(page.find_element("id", "search")).perform()
    assert page.find_element("css selector", "#details h2").text == "stem"


def _ink(d) -> float:
    """The share of the diagram's pixels that differ from its background."""
    from matplotlib.image import imread

    img = imread(io.BytesIO(d.get_screenshot_as_png()))[:, :, :3]
    top = d.execute_script("return document.getElementById('canvas').getBoundingClientRect().top")
    canvas = img[int(top) + 4:, : img.shape[1] - 480]  # left of the side panel
    background = canvas[2, 2]
    return float((abs(canvas - background).sum(axis=2) > 0.1).mean())


@pytest.mark.parametrize("dark", [False, True])
def test_screenshot_is_not_blank_light_or_dark(page, dark):
    browser.set_dark(page, dark)
    page.execute_script("document.getElementById('collapse-all').click()")
    assert _ink(page) > 0.02
    body = page.execute_script("return getComputedStyle(document.body).backgroundColor")
    level = sum(map(int, re.findall(r"\d+", body)[:3]))
    assert (level < 150) == dark, body


def test_block_page_and_the_largest_example_expanded(driver, pages):
    browser.open_page(driver, pages["block"])
    body, _, _ = block_graph("soft_attention", None)
    assert driver.find_element("id", "title").text.startswith("soft_attention(")
    assert sorted(drawn_ids(driver)) == sorted(n.name for n in body.layers())
    mob = check_file(str(ROOT / "specs" / "examples" / "mobilenet_v2.yaml"))
    browser.open_page(driver, pages["mobilenet"])
    driver.execute_script("document.getElementById('expand-all').click()")
    assert len(drawn_ids(driver)) == len(rows(mob.graph, expand=True))
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_named_inputs_are_drawn_as_the_svg_figures_draw_them(driver, pages):
    """The U-Net's skip leaves the decoder block's head, labelled `skip`; the block drawn alone
    has `skip` as a second input terminal. The page builds the same DOT as backends/dot.py."""
    unet = check_file(str(UNET))
    browser.open_page(driver, pages["unet"])
    driver.execute_script("document.getElementById('expand-all').click()")
    mine = parse_dot(driver.execute_script("return archcViewer.dotText()"))
    ours = parse_dot(to_dot(unet.graph, unet.registry, expand=True))
    assert mine[0] == ours[0] and sorted(mine[2]) == sorted(ours[2])
    assert ("up1", "up1.cat", "skip", False) in ours[2]
    browser.open_page(driver, pages["unet_up"])
    body, registry, _ = block_graph("up", unet)
    mine = parse_dot(driver.execute_script("return archcViewer.dotText()"))
    ours = parse_dot(to_dot(body, registry))
    assert mine[0] == ours[0] and sorted(mine[2]) == sorted(ours[2]) and "skip" in mine[0]
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.mark.parametrize("expand", [False, True])
def test_several_outputs_are_drawn_as_the_svg_figures_draw_them(driver, pages, expand):
    """Each output of a block is a node of its own, fed from the block (or, opened, from the
    body node that computes it); a block drawn alone sends each of its outputs to `output`."""
    net = check_file(str(SEVERAL))
    browser.open_page(driver, pages["several"])
    if expand:
        driver.execute_script("document.getElementById('expand-all').click()")
    mine = parse_dot(driver.execute_script("return archcViewer.dotText()"))
    ours = parse_dot(to_dot(net.graph, net.registry, expand=expand))
    assert mine[0] == ours[0] and sorted(mine[2]) == sorted(ours[2])
    assert ("neck.p4" if expand else "neck", "p4", "8 x 8 x 32", False) in ours[2]
    browser.open_page(driver, pages["several_fpn"])
    body, registry, _ = block_graph("fpn", net)
    mine = parse_dot(driver.execute_script("return archcViewer.dotText()"))
    ours = parse_dot(to_dot(body, registry))
    assert mine[0] == ours[0] and sorted(mine[2]) == sorted(ours[2])
    assert {e for e in ours[2] if e[1] == "@output"} == {("p3", "@output", "p3: 16 x 16 x 32", False), ("p4", "@output", "p4: 8 x 8 x 32", False),
                                                         ("p5", "@output", "p5: 4 x 4 x 32", False)}
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
