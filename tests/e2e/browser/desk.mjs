// Drives Debian's headless Chromium through the safety desk page for tests/e2e/test_desk_page.py.
//
//   node desk.mjs '<json config>'
//
// Opens the desk, signs in through the page's form, prints {"ready": true} once the page is live,
// then waits (without reloading) for the alerts the test publishes, reads what each card shows,
// acknowledges one with a comment typed into the page, waits for it to move to "recently
// acknowledged", opens its history, saves a screenshot, signs out and prints one JSON line of
// results. The test asserts on them; this script only fails by itself when the browser cannot run.
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const timeout = config.timeoutMs ?? 15000;
const emit = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

const result = {
  consoleErrors: [],
  pageErrors: [],
  foreignRequests: [],
  failedRequests: [],
  steps: [],
};
const step = (name) => result.steps.push(name);

const browser = await chromium.launch({
  executablePath: config.chromium ?? "/usr/bin/chromium",
  headless: true, // Playwright gives the browser a fresh --user-data-dir of its own
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 30000,
});

let page;
try {
  const context = await browser.newContext({
    viewport: { width: 1440, height: 1100 },
    timezoneId: config.timezone,
    locale: "en-GB",
  });
  page = await context.newPage();
  page.setDefaultTimeout(timeout);
  const origin = new URL(config.url).origin;
  page.on("console", (m) => {
    if (m.type() === "error") result.consoleErrors.push(`${m.text()} [${new URL(m.location().url).pathname}]`);
  });
  page.on("pageerror", (e) => result.pageErrors.push(String(e)));
  page.on("request", (r) => {
    if (!r.url().startsWith(origin)) result.foreignRequests.push(r.url());
  });
  page.on("requestfailed", (r) => result.failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`));

  const response = await page.goto(`${config.url}/desk`);
  result.status = response.status();
  result.contentSecurityPolicy = response.headers()["content-security-policy"] ?? null;

  // Signed out: a sign-in form and no alerts. A wrong password is refused.
  await page.locator("#sign-in").waitFor();
  result.signedOut = {
    message: await page.locator("#account-message").textContent(),
    deskVisible: await page.locator("#desk").isVisible(),
    alertCards: await page.locator("li.alert").count(),
  };
  await page.locator("#sign-in-user").fill(config.user);
  await page.locator("#sign-in-password").fill(`${config.password}-wrong`);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#account-message", { hasText: "Not signed in" }).waitFor();
  result.wrongPassword = await page.locator("#account-message").textContent();

  await page.locator("#sign-in-password").fill(config.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator('#connection[data-state="live"]').waitFor();
  result.signedInAs = await page.locator("#signed-in").textContent();
  result.title = await page.title();
  step("signed in");
  // Survives only if the page is never reloaded or navigated away from.
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  step("live");
  emit({ ready: true });

  const card = (list, id) => page.locator(`#${list}-list > li[data-alert-id="${id}"]`);
  const readCard = async (locator) => ({
    alertId: await locator.getAttribute("data-alert-id"),
    severity: await locator.locator(".severity").textContent(),
    severityAttr: await locator.getAttribute("data-severity"),
    severityColour: await locator.locator(".severity").evaluate((e) => getComputedStyle(e).backgroundColor),
    status: await locator.locator(".status").textContent(),
    title: await locator.locator(".open-detail").textContent(),
    subject: await locator.locator(".subject").textContent(),
    site: await locator.locator(".site").textContent(),
    age: await locator.locator(".age").textContent(),
    raisedTooltip: await locator.locator(".age").getAttribute("title"),
    deadline: await locator.locator(".deadline").textContent(),
    deadlineState: await locator.locator(".deadline").getAttribute("data-state"),
    deadlineColour: await locator.locator(".deadline").evaluate((e) => getComputedStyle(e).backgroundColor),
    acked: (await locator.locator(".acked").isVisible()) ? await locator.locator(".acked").textContent() : null,
    imgElements: await locator.locator("img").count(),
  });

  const started = Date.now();
  for (const id of config.expectOpen) await card("open", id).waitFor();
  result.appearedAfterMs = Date.now() - started;
  step("alerts appeared");
  result.openOrder = await page.locator("#open-list > li").evaluateAll((els) => els.map((e) => e.dataset.alertId));
  result.open = {};
  for (const id of config.expectOpen) result.open[id] = await readCard(card("open", id));
  result.injected = await page.evaluate(() => window.__xss ?? null);

  // Acknowledge one alert with a comment, as the signed-in physician.
  const target = card("open", config.acknowledge);
  await target.locator("textarea[name=comment]").fill(config.comment);
  await target.getByRole("button", { name: "Acknowledge" }).click();
  const clicked = Date.now();
  await target.waitFor({ state: "detached" });
  await card("recent", config.acknowledge).locator(".acked").waitFor();
  result.movedAfterMs = Date.now() - clicked;
  step("acknowledged");
  result.recent = await readCard(card("recent", config.acknowledge));
  result.openAfter = await page.locator("#open-list > li").evaluateAll((els) => els.map((e) => e.dataset.alertId));
  result.openCountText = await page.locator("#open-count").textContent();

  // Its detail: fields, history and email deliveries.
  await card("recent", config.acknowledge).locator(".open-detail").click();
  await page.locator("#detail-history li", { hasText: "AlertAcknowledged" }).waitFor();
  result.detail = {
    title: await page.locator("#detail-title").textContent(),
    fields: await page.locator("#detail-fields").evaluate((dl) => {
      const out = {};
      for (const dt of dl.querySelectorAll("dt")) out[dt.textContent] = dt.nextElementSibling.textContent;
      return out;
    }),
    history: await page.locator("#detail-history li").allTextContents(),
    notifications: await page.locator("#detail-notifications li").allTextContents(),
  };
  step("detail");

  result.sameDocument = await page.evaluate(() => window.__sameDocument === true);
  result.connection = await page.locator("#connection").textContent();
  await mkdir(dirname(config.screenshot), { recursive: true });
  await page.screenshot({ path: config.screenshot, fullPage: true });
  step("screenshot");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#sign-in").waitFor();
  result.afterSignOut = {
    deskVisible: await page.locator("#desk").isVisible(),
    alertCards: await page.locator("li.alert").count(),
    stillSignedIn: (await page.request.get(`${config.url}/auth/me`)).status() === 200,
  };
  step("signed out");
} catch (error) {
  result.error = String(error && error.stack ? error.stack : error);
  result.failureScreenshot = config.screenshot.replace(/\.png$/, "-failure.png");
  await mkdir(dirname(config.screenshot), { recursive: true });
  await page?.screenshot({ path: result.failureScreenshot, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
emit(result);
