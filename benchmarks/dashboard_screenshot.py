"""Screenshot the Explanations dashboard as a newcomer first sees it, and print what its controls say.

    python benchmarks/dashboard_screenshot.py LOGDIR OUT.png [WIDTH] [fit]

Starts TensorBoard on LOGDIR (127.0.0.1, a free port), opens the dashboard in headless Chromium
(Debian's chromium and chromium-driver) at WIDTH x 1100 pixels (default 1400), waits 20 s for
the maps, saves the page and prints the epoch label, the colormap note, the cell size, the
grid's width against the page's, the run boxes and the first captions ("fit": after pressing
"fit to width"). Stops TensorBoard.
"""
import json, socket, subprocess, sys, time, urllib.request
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

logdir, out = sys.argv[1], sys.argv[2]
width = int(sys.argv[3]) if len(sys.argv) > 3 else 1400
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port),
                         "--samples_per_plugin=images=1000,keras_interp=1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            with urllib.request.urlopen(f"{url}/data/plugin/keras_interp/runs", timeout=2) as r:
                if json.load(r)["runs"]: break
        except Exception:
            time.sleep(0.5)
    options = webdriver.ChromeOptions(); options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},1100"):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    d.get(f"{url}/?darkMode=false#keras_interp")
    time.sleep(20)
    if "fit" in sys.argv[4:]:
        d.switch_to.frame(d.find_elements("css selector", "iframe")[0])
        d.find_element("id", "size-fit").click()
        d.switch_to.default_content()
        time.sleep(5)
    d.save_screenshot(out)
    # the plugin frame's own state, for the record
    frames = d.find_elements("css selector", "iframe")
    if frames:
        d.switch_to.frame(frames[0])
        info = d.execute_script("""return {epoch: (document.getElementById('epoch-label')||{}).textContent,
          note: (document.getElementById('colormap-note')||{}).textContent,
          size: getComputedStyle(document.documentElement).getPropertyValue('--ki-size'),
          grid: document.getElementById('grid') && document.getElementById('grid').getBoundingClientRect().width,
          page: document.body.clientWidth,
          runs: [...document.querySelectorAll('#sidebar input[type=checkbox]')].slice(0,4).map(b => b.checked),
          captions: [...document.querySelectorAll('.caption')].slice(0,2).map(c => c.textContent)}""")
        print(info)
    d.quit()
finally:
    proc.terminate(); proc.wait(timeout=20)
