// Drives Debian's headless Chromium through the safety desk page for tests/e2e/test_desk_page.py.
//
//   node desk.mjs '<json config>'
//
// Opens the desk, signs in through the page's form, prints {"ready": true} once the page is live,
// then waits (without reloading) for the alerts the test publishes, reads what each card shows,
// acknowledges one with a comment typed into the page, waits for it to move to "acknowledged and
// recently resolved", opens its history, resolves it with a comment (after trying without one),
// saves a screenshot; tries to resolve an alert another physician has just resolved (a 409); once
// the test says on stdin that the subject's events are in the log ({"produced": true}), opens that
// subject's timeline and saves a second screenshot; opens a timeline the API answers 404 for;
// signs out and prints one JSON line of results. The test asserts on them; this script only fails
// by itself when the browser cannot run.
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import { chromium, request } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const timeout = config.timeoutMs ?? 15000;
const emit = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
// Resolved when the test has published the timeline's events (it writes one line on stdin).
const produced = new Promise((resolve) => {
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (JSON.parse(line).produced) resolve();
  });
});

const result = {
  consoleErrors: [],
  pageErrors: [],
  foreignRequests: [],
  failedRequests: [],
  steps: [],
};
const step = (name) => result.steps.push(name);
const shot = (name) => config.screenshot.replace(/\.png$/, `-${name}.png`); // desk-<name>.png

// A step that never finishes (a wait without its own timeout) still ends the run with what it has.
let page;
const watchdog = setTimeout(async () => {
  result.error = `stuck after step "${result.steps.at(-1) ?? "start"}" for ${config.totalTimeoutMs ?? 90000} ms`;
  await page?.screenshot({ path: config.screenshot.replace(/\.png$/, "-failure.png"), fullPage: true }).catch(() => {});
  emit(result);
  process.exit(0);
}, config.totalTimeoutMs ?? 90000);

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

  // Resolve it from the acknowledged list: not without a comment; with one, it stays in the list
  // marked resolved (no form left), and the open detail gains the resolution.
  const done = card("recent", config.acknowledge);
  await done.getByRole("button", { name: "Resolve" }).click();
  await done.locator(".ack-message", { hasText: "needs a comment" }).waitFor();
  result.resolveWithoutComment = await done.locator(".ack-message").textContent();
  result.acknowledgeButtonOnAcknowledged = await done.getByRole("button", { name: "Acknowledge" }).isVisible();
  await mkdir(dirname(config.screenshot), { recursive: true });
  await page.screenshot({ path: shot("resolve"), fullPage: true });
  await done.locator("textarea[name=comment]").fill(config.resolveComment);
  await done.getByRole("button", { name: "Resolve" }).click();
  await done.locator(".resolved").waitFor();
  await page.locator("#detail-history li", { hasText: "AlertResolved" }).waitFor();
  result.resolved = {
    ...(await readCard(done)),
    resolved: await done.locator(".resolved").textContent(),
    forms: await done.locator("form").count(),
  };
  result.detailResolved = {
    fields: await page.locator("#detail-fields").evaluate((dl) => {
      const out = {};
      for (const dt of dl.querySelectorAll("dt")) out[dt.textContent] = dt.nextElementSibling.textContent;
      return out;
    }),
    history: await page.locator("#detail-history li").allTextContents(),
  };
  step("resolved");

  result.sameDocument = await page.evaluate(() => window.__sameDocument === true);
  result.connection = await page.locator("#connection").textContent();
  await page.screenshot({ path: config.screenshot, fullPage: true });
  step("screenshot");

  // Another physician resolves an open alert while this page still offers it. The page's list
  // reads are held meanwhile (so the card is still there to click, as on a busy desk between two
  // updates); the refusal must say who closed it, and survive the card leaving the open list.
  let release;
  const held = new Promise((resolve) => {
    release = resolve;
  });
  const lists = /\/v1\/alerts\?/;
  let intercepted;
  const polling = new Promise((resolve) => {
    intercepted = resolve;
  });
  await page.route(lists, async (route) => {
    intercepted();
    await held;
    await route.continue();
  });
  // The page's next read is held: the one before it (sent before the route) has been answered.
  await polling;
  const other = await request.newContext({
    baseURL: origin,
    extraHTTPHeaders: { authorization: `Bearer ${config.otherToken}` },
  });
  const taken = await other.post(`/v1/alerts/${config.conflict}/resolve`, {
    data: { comment: config.otherComment },
  });
  result.otherResolveStatus = taken.status();
  await other.dispose();
  const stale = card("open", config.conflict);
  await stale.locator("textarea[name=comment]").fill(config.conflictComment);
  await stale.getByRole("button", { name: "Resolve" }).click();
  await page.locator("#action-message:not([hidden])").waitFor();
  result.conflict = {
    card: await stale.locator(".ack-message").textContent(),
    banner: await page.locator("#action-text").textContent(),
  };
  await page.screenshot({ path: shot("conflict"), fullPage: true });
  release();
  await page.unrouteAll({ behavior: "wait" }); // once the held reads have gone through
  await card("recent", config.conflict).locator(".resolved").waitFor();
  result.conflict.closed = await card("recent", config.conflict).locator(".resolved").textContent();
  result.conflict.stillOpen = await card("open", config.conflict).count();
  await page.getByRole("button", { name: "Dismiss" }).click();
  result.conflict.dismissed = await page.locator("#action-message").isHidden();
  step("conflict");

  // The subject's timeline, from a click on the subject of its (resolved) alert.
  await produced;
  await card("recent", config.acknowledge).locator(".open-timeline").click();
  await page.locator('#timeline-list > li[data-kind="lab"] .grade').first().waitFor();
  await page.locator('#timeline-list > li[data-kind="alert"]').waitFor();
  result.timeline = {
    visible: await page.locator("#timeline").isVisible(),
    title: await page.locator("#timeline-title").textContent(),
    legend: await page.locator("#timeline-legend li").allTextContents(),
    message: (await page.locator("#timeline-message").isVisible())
      ? await page.locator("#timeline-message").textContent()
      : null,
    items: await page.locator("#timeline-list > li").evaluateAll((els) =>
      els.map((li) => {
        const text = li.querySelector(".text");
        const one = (selector) => li.querySelector(selector)?.textContent ?? null;
        return {
          kind: li.dataset.kind,
          label: one(".kind"),
          when: one(".when"),
          text: text.textContent,
          visit: one(".visit"),
          grades: [...li.querySelectorAll(".grade")].map((g) => g.textContent),
          severity: one(".severity"),
          status: one(".state"),
          retracted: li.classList.contains("retracted"),
          struckThrough: getComputedStyle(text).textDecorationLine.includes("line-through"),
        };
      })
    ),
    detailStillOpen: await page.locator("#detail").isVisible(),
  };
  await page.screenshot({ path: shot("timeline"), fullPage: true });
  step("timeline");

  // A timeline the API refuses with 404 (no events, or none this user may see). As a safety
  // physician sees every site, the answer is made up here: the page's handling is what is tested.
  await page.route(`**/v1/subjects/${encodeURIComponent(config.missingSubject)}/timeline`, (route) =>
    route.fulfill({
      status: 404,
      contentType: "application/json",
      body: JSON.stringify({ detail: `no events for subject ${config.missingSubject}` }),
    })
  );
  await card("open", config.missingAlert).locator(".open-timeline").click();
  await page.locator("#timeline-message", { hasText: "No events" }).waitFor();
  result.timelineMissing = {
    title: await page.locator("#timeline-title").textContent(),
    message: await page.locator("#timeline-message").textContent(),
    items: await page.locator("#timeline-list > li").count(),
  };
  await page.keyboard.press("Escape");
  result.timelineMissing.closedByEscape = await page.locator("#timeline").isHidden();
  step("timeline 404");
  result.injectedAtEnd = await page.evaluate(() => window.__xss ?? null);

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#sign-in").waitFor();
  result.afterSignOut = {
    deskVisible: await page.locator("#desk").isVisible(),
    timelineVisible: await page.locator("#timeline").isVisible(),
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
  clearTimeout(watchdog);
  await browser.close();
}
emit(result);
process.exit(0); // stdin may still be open
