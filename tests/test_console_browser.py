"""The operator console as a person uses it: headless Chromium (Debian's chromium + chromedriver, driven by
selenium) on the page of a console process attached to the real sim graph (LIBERO robot, scripted-expert policy,
bridge, all over DDS). A wrong token gets no page; a typed command runs an episode; Next trial runs and scores a
trial whose row appears in the results table (and in results.md, as ``roboalign trials`` writes it), and a note is
kept; in real mode the operator's mark scores it; takes are recorded, kept or discarded and counted; the E-STOP
click holds the bridge, with the click-to-hold latency printed; a screenshot of the page is saved (to
docs/figures/console.png with ROBOALIGN_DOCS_FIGURES=1, which regenerates the docs' figure; to the test's tmp folder
otherwise, so a test run leaves the checkout as it was)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")
pytest.importorskip("aiohttp", reason="the console's server (make setup installs it)")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium drives the browser (make setup installs it)")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver (make setup installs them)", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from roboalign.commands.trials import RESULTS_MD, read_trials  # noqa: E402
from roboalign_policy.graph import load_graph  # noqa: E402
from roboalign_policy.tools.operator_client import OperatorClient  # noqa: E402
from roboalign_policy.tools.process_graph import ProcessGraph  # noqa: E402
from tests.test_console import TOKEN, start_console, stop_console  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS_SCREENSHOT = ROOT / "docs" / "figures" / "console.png"
INSTRUCTION = "put the alphabet soup on the tray"  # shelf_to_tray: the scene the sim graph loads first
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The sim graph (expert policy) and a console on it; yields (console base URL, trials folder, client)."""
    tmp = tmp_path_factory.mktemp("console_sim")
    procs = ProcessGraph(load_graph("sim"), {"camera_size": "64", "render_every": "3", "init_state": "0",
                                             "record_dir": str(tmp / "bags")}, tmp / "logs", env={"OMP_NUM_THREADS": "1"})
    procs.start()
    client = console = None
    try:
        client = OperatorClient()
        deadline = time.monotonic() + 240
        while not (client.wait_for_status(timeout=1.0) and client.joints):
            assert not procs.dead(), {n: procs.log_tail(n) for n in procs.dead()}
            assert time.monotonic() < deadline, "the sim stack did not come up in 240 s"
        console, base, err = start_console(tmp, "-p", "trial_tasks:=[shelf_to_tray]", "-p", "label:=expert",
                                           "-p", "first_init_state:=2")
        yield base, tmp, client
        assert console.poll() is None, err.read_text()[-2000:]
    finally:
        if console is not None:
            stop_console(console)
        if client is not None:
            client.close()
        procs.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager never looks for a driver online
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download: Debian's
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver, predicate, timeout: float, what: str):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: predicate(d), message=f"{what} within {timeout:g} s")


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def open_page(driver, base: str) -> None:
    driver.get(f"{base}/?token={TOKEN}")
    wait(driver, lambda d: text(d, "link") == "connected" and "phase: ?" not in text(d, "phase"), 30,
         "the page connects and shows the episode")


def say(driver, instruction: str) -> None:
    """Type a command the way an operator does and press START once the console shows its task."""
    box = driver.find_element(By.ID, "instruction")
    box.clear()
    box.send_keys(instruction)
    wait(driver, lambda d: "→ task shelf_to_tray" in text(d, "resolve"), 20, "the completion resolves the task")
    driver.find_element(By.ID, "start").click()


def test_a_wrong_or_missing_token_gets_no_page(stack, browser) -> None:
    base, _, _ = stack
    browser.get(f"{base}/?token=not-the-{TOKEN}")
    assert "wrong token" in browser.find_element(By.TAG_NAME, "body").text
    assert not browser.find_elements(By.ID, "estop")
    browser.get(f"{base}/")
    assert "token required" in browser.find_element(By.TAG_NAME, "body").text


def test_a_typed_command_runs_an_episode_then_next_trial_is_scored_into_the_results(stack, browser) -> None:
    base, tmp, client = stack
    trials_dir = tmp / "trials"
    open_page(browser, base)
    wait(browser, lambda d: "live policy: scripted expert" in text(d, "live"), 60, "the page names the live policy")
    before = client.wait_for_status(timeout=5.0).episode
    say(browser, INSTRUCTION)
    wait(browser, lambda d: f"episode {before + 1} shelf_to_tray" in text(d, "episode"), 60, "the episode starts")
    wait(browser, lambda d: text(d, "phase") == "phase: success", 240, "the expert's episode succeeds")
    browser.find_element(By.CSS_SELECTOR, "[data-tab=trials]").click()
    assert "shelf_to_tray / alphabet soup trial 1 from init state 2" in text(browser, "trials-next")
    browser.find_element(By.ID, "trial-next").click()
    row = "expert shelf_to_tray alphabet soup 1 1 100.0"
    wait(browser, lambda d: row in text(d, "results"), 300, "the scored trial's row in the results table")
    (trial,) = read_trials(trials_dir)
    assert (trial.label, trial.task, trial.success, trial.init_state) == ("expert", "shelf_to_tray", True, 2)
    assert "| sim | shelf_to_tray | alphabet soup | 100.0 (1/1) |" in (trials_dir / RESULTS_MD).read_text()
    assert "1/24 done, 1 successes" in text(browser, "progress")
    wait(browser, lambda d: "trial 2 from init state 3" in text(d, "trials-next"), 10, "the next trial offered")
    assert text(browser, "note-on") == "note on shelf_to_tray / alphabet soup trial 1"
    browser.find_element(By.ID, "note").send_keys("grasped at the rim")
    browser.find_element(By.ID, "add-note").click()
    wait(browser, lambda d: (trials_dir / "trial_notes.csv").is_file(), 10, "the note written")
    assert "expert,sim,shelf_to_tray,alphabet soup,0,grasped at the rim" in (trials_dir / "trial_notes.csv").read_text()
    shot = DOCS_SCREENSHOT if os.environ.get("ROBOALIGN_DOCS_FIGURES") == "1" else trials_dir / "console.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.CSS_SELECTOR, "[data-tab=run]").click()
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_on_a_robot_the_operator_marks_the_trial_from_the_page(stack, browser) -> None:
    """A console in real mode (the operator's verdict, not the simulator's, scores a trial): the episode ends, the
    page asks, the operator clicks "no", and the trial is a failure although the scene reported success."""
    base, tmp, client = stack
    console, real_base, err = start_console(tmp / "real", "-p", "mode:=real", "-p", "trial_tasks:=[shelf_to_tray]",
                                            "-p", "label:=operator")
    try:
        open_page(browser, real_base)
        browser.find_element(By.CSS_SELECTOR, "[data-tab=trials]").click()
        assert "shelf_to_tray / alphabet soup trial 1 (set the scene up" in text(browser, "trials-next")
        browser.find_element(By.ID, "trial-next").click()
        wait(browser, lambda d: d.find_element(By.ID, "trial-mark").is_displayed(), 300, "the page asks for the mark")
        browser.find_element(By.CSS_SELECTOR, "[data-mark=n]").click()
        wait(browser, lambda d: "operator shelf_to_tray alphabet soup 0 1 0.0" in text(d, "results"), 30,
             "the operator's failure in the results table")
        (trial,) = read_trials(tmp / "real" / "trials")
        assert (trial.label, trial.mode, trial.success) == ("operator", "real", False)
        assert trial.outcome == "operator:n (success)"  # the operator's word over the scene's
        assert "shelf_to_tray / milk" in text(browser, "progress")  # a real task's four objects
    finally:
        assert stop_console(console) == 0, err.read_text()[-2000:]


def test_takes_are_recorded_kept_or_discarded_and_counted_from_the_page(stack, browser) -> None:
    """Kinesthetic takes (the sim arm stays where it is) through ``roboalign record``'s recorder: a discarded one
    and a kept one, converted into the dataset and counted against the 60 per task; then back to the policy."""
    from roboalign.commands.record import read_takes

    base, tmp, client = stack
    open_page(browser, base)
    browser.find_element(By.CSS_SELECTOR, "[data-tab=record]").click()
    Select = pytest.importorskip("selenium.webdriver.support.select").Select
    Select(browser.find_element(By.ID, "rec-source")).select_by_value("kinesthetic")
    Select(browser.find_element(By.ID, "rec-task")).select_by_value("shelf_to_tray")
    for verdict in ("discard", "keep"):
        browser.find_element(By.ID, "rec-start").click()
        wait(browser, lambda d: "then press Done" in text(d, "rec-prompt"), 60, "the take runs")
        assert client.wait_for_status(lambda s: s.phase == "running" and s.steps >= 3, timeout=60) is not None
        browser.find_element(By.ID, "rec-done").click()
        wait(browser, lambda d: "keep, discard or redo?" in text(d, "rec-prompt"), 60, "the take ends")
        browser.find_element(By.CSS_SELECTOR, f"[data-verdict={verdict}]").click()
        wait(browser, lambda d, v=verdict: f": {v} (stopped" in text(d, "rec-last"), 120, f"the take is {verdict}ed")
    takes = read_takes(tmp / "record")
    assert [(t.take, t.verdict, t.mode, t.task) for t in takes] == [(0, "discard", "kinesthetic", "shelf_to_tray"),
                                                                   (1, "keep", "kinesthetic", "shelf_to_tray")]
    assert (tmp / "record" / takes[1].dataset_episode).is_file() and takes[0].dataset_episode == ""
    assert "shelf_to_tray alphabet soup 1 1 / 60" in text(browser, "rec-counts")
    browser.find_element(By.ID, "rec-finish").click()
    wait(browser, lambda d: "record finish" in text(d, "actions"), 20, "the bridge handed back to the policy")
    assert client.get_parameters("bridge_node", ["mode"])["mode"] == "policy"


def test_the_estop_click_holds_the_bridge(stack, browser) -> None:
    base, _, client = stack
    open_page(browser, base)
    before = client.wait_for_status(timeout=5.0).episode
    say(browser, INSTRUCTION)
    episode = before + 1
    assert client.wait_for_status(lambda s: s.episode == episode and s.steps >= 3, timeout=120) is not None
    assert browser.execute_script("return estopWs.readyState") == 1  # the e-stop line is open
    button = browser.find_element(By.ID, "estop")
    t_click = time.monotonic()
    button.click()
    held = client.wait_for_status(lambda s: s.phase == "estop", timeout=10)
    assert held is not None, "the bridge did not hold after the E-STOP click"
    ros_ms = (held.received - t_click) * 1000.0
    page_ms = wait(browser, lambda d: d.execute_script("return window.consoleState.estopLatencyMs"), 10,
                   "the page shows the hold")
    assert "held: click → bridge e-stop status" in text(browser, "estop-info")
    print(f"\n[console] e-stop click-to-hold: {page_ms:.0f} ms on the page (click -> the bridge's e-stop status "
          f"back on the page), {ros_ms:.0f} ms to a ROS client's EpisodeStatus (target <= 100 ms)")
    assert client.command("start", instruction=INSTRUCTION).accepted is False  # held: nothing starts
    browser.find_element(By.ID, "release").click()
    assert client.wait_for_status(lambda s: s.phase == "idle", timeout=10) is not None
    wait(browser, lambda d: text(d, "phase") == "phase: idle", 10, "the page shows the release")
    assert "e-stop" in text(browser, "actions") and "release e-stop" in text(browser, "actions")
