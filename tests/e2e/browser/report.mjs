// Renders a DSMB report (an index.html on disk) in Debian's headless Chromium for
// tests/e2e/test_dsmb_report_page.py: waits for its images, reads what the page shows, saves a
// full-page screenshot, prints one JSON line of results. The test asserts on them; this script
// only fails by itself when the browser cannot run.
//
//   node report.mjs '{"file": "/abs/index.html", "screenshot": "/abs/report.png", "chromium": "..."}'
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const result = { consoleErrors: [], pageErrors: [], failedRequests: [] };
const browser = await chromium.launch({
  executablePath: config.chromium ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  timeout: 30000,
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.setDefaultTimeout(config.timeoutMs ?? 15000);
  page.on("console", (m) => { if (m.type() === "error") result.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("requestfailed", (r) => result.failedRequests.push(r.url()));
  await page.goto(pathToFileURL(config.file).href, { waitUntil: "load" });
  result.title = await page.title();
  result.tables = await page.$$eval("section[id] > h2", (hs) => hs.map((h) => h.textContent));
  result.tableRows = await page.$$eval("section[id] table", (ts) =>
    Object.fromEntries(ts.map((t) => [t.closest("section").id, t.tBodies[0].rows.length])));
  result.images = await page.$$eval("img", (imgs) =>
    imgs.map((i) => ({ alt: i.alt, width: i.naturalWidth, height: i.naturalHeight, shown: i.getBoundingClientRect().width })));
  await page.screenshot({ path: config.screenshot, fullPage: true });
  result.screenshot = config.screenshot;
} catch (error) {
  result.error = String(error);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
