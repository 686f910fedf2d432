// The safety desk page. Signs in (a session cookie the page's script cannot read), then reads the
// alert API and updates the lists in place every 2 s, so a comment being typed survives the
// updates. Every value from the server is written with textContent or as an attribute value,
// never as markup.
"use strict";

(() => {
  const POLL_MS = 2000; // the open list
  const ALL_EVERY_MS = 30000; // the recently acknowledged list, unless the open list changed
  const STALE_MS = 10000;
  const RECENT_LIMIT = 20;
  const DUE_SOON_MS = 2 * 3600 * 1000;
  const PHYSICIAN = "safety-physician";
  const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3, info: 4 };
  const STATUS_TEXT = {
    raised: "raised · email pending",
    notified: "notified by email",
    acknowledged: "acknowledged",
    resolved: "resolved",
    retracted: "retracted (data corrected)",
  };
  const ROLE_TEXT = { "safety-physician": "safety physician", viewer: "viewer, read only" };

  const $ = (selector, root = document) => root.querySelector(selector);
  const api = (path) => new URL(path, document.baseURI).href;

  const ui = {
    signIn: $("#sign-in"),
    signInUser: $("#sign-in-user"),
    signInPassword: $("#sign-in-password"),
    signedIn: $("#signed-in"),
    meUser: $("#me-user"),
    meRole: $("#me-role"),
    signOut: $("#sign-out"),
    accountMessage: $("#account-message"),
    desk: $("#desk"),
    connection: $("#connection"),
    openList: $("#open-list"),
    openCount: $("#open-count"),
    openEmpty: $("#open-empty"),
    recentList: $("#recent-list"),
    recentEmpty: $("#recent-empty"),
    template: $("#alert-template"),
    detail: $("#detail"),
    detailTitle: $("#detail-title"),
    detailError: $("#detail-error"),
    detailFields: $("#detail-fields"),
    detailText: $("#detail-text"),
    detailHistory: $("#detail-history"),
    detailNotifications: $("#detail-notifications"),
  };

  const openCards = new Map(); // alert_id -> {el, alert}
  const recentCards = new Map();
  let me = null; // the signed-in user: {user_id, role, site_id}
  let clockOffsetMs = 0; // the server's clock minus this computer's, when they disagree
  let lastUpdate = null;
  let lastError = null;
  let openIds = null; // the open list's alert ids at the last poll, to notice a change
  let allFetchedAt = 0;
  let detailId = null;
  let detailRow = null; // the detail's alert as the lists last showed it, to notice a change
  let refreshSeq = 0;
  let renderedSeq = 0;

  const now = () => Date.now() + clockOffsetMs;

  class SignedOut extends Error {}

  // ---- formatting --------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");

  function utcOffset(date) {
    const minutes = -date.getTimezoneOffset();
    const abs = Math.abs(minutes);
    return `UTC${minutes < 0 ? "-" : "+"}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
  }

  function localTime(iso, withSeconds = false) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const seconds = withSeconds ? `:${pad(d.getSeconds())}` : "";
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds} ${utcOffset(d)}`
    );
  }

  function duration(ms) {
    const minutes = Math.floor(Math.abs(ms) / 60000);
    if (minutes < 1) return "less than 1 min";
    const days = Math.floor(minutes / 1440);
    const hours = Math.floor((minutes % 1440) / 60);
    const mins = minutes % 60;
    if (days) return `${days} d ${hours} h`;
    if (hours) return `${hours} h ${mins} min`;
    return `${mins} min`;
  }

  function deadline(alert) {
    if (!alert.due_at) return { text: "No reporting deadline", state: "none" };
    const left = new Date(alert.due_at).getTime() - now();
    const at = localTime(alert.due_at);
    if (left <= 0) return { text: `OVERDUE by ${duration(left)} (was due ${at})`, state: "overdue" };
    return { text: `Due in ${duration(left)} (${at})`, state: left < DUE_SOON_MS ? "soon" : "ok" };
  }

  const statusText = (status) => STATUS_TEXT[status] || String(status);
  const canAcknowledge = () => Boolean(me && me.role === PHYSICIAN);

  function setText(root, selector, text) {
    const el = $(selector, root);
    if (el.textContent !== text) el.textContent = text;
    return el;
  }

  // ---- alert cards -------------------------------------------------------------------------

  function newCard(alert, recent) {
    const el = ui.template.content.firstElementChild.cloneNode(true);
    const id = alert.alert_id;
    el.dataset.alertId = id;
    $(".open-detail", el).addEventListener("click", () => openDetail(id));
    $(".alert-main", el).addEventListener("click", (event) => {
      if (!event.target.closest("button")) openDetail(id);
    });
    const form = $("form.ack", el);
    if (recent || !canAcknowledge()) {
      form.remove();
    } else {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        acknowledge(id, el);
      });
    }
    return el;
  }

  function fillCard(el, alert) {
    el.dataset.severity = alert.severity;
    el.dataset.status = alert.status;
    setText(el, ".severity", String(alert.severity).toUpperCase());
    setText(el, ".status", statusText(alert.status));
    setText(el, ".open-detail", alert.title);
    setText(el, ".subject", alert.subject_id);
    setText(el, ".site", alert.site_id);
    const tier = Number(alert.escalation_tier || 0);
    $(".escalated", el).hidden = tier <= 0;
    if (tier > 0) setText(el, ".escalated", `escalated · tier ${tier}`);
    const acked = $(".acked", el);
    acked.hidden = !alert.acknowledged_by;
    if (alert.acknowledged_by) {
      const comment = alert.acknowledgement_comment ? ` — “${alert.acknowledgement_comment}”` : "";
      setText(
        el,
        ".acked",
        `Acknowledged by ${alert.acknowledged_by} at ${localTime(alert.acknowledged_at)}${comment}`
      );
    }
    el.classList.toggle("selected", alert.alert_id === detailId);
    fillTimes(el, alert);
  }

  function fillTimes(el, alert) {
    const age = setText(el, ".age", `Raised ${duration(now() - new Date(alert.raised_at).getTime())} ago`);
    age.title = `Raised ${localTime(alert.raised_at, true)}`;
    const due = deadline(alert);
    const dueEl = setText(el, ".deadline", due.text);
    if (dueEl.dataset.state !== due.state) dueEl.dataset.state = due.state;
  }

  function bySeverityThenAge(a, b) {
    const rank = (s) => (s in SEVERITY_RANK ? SEVERITY_RANK[s] : 99);
    return (
      rank(a.severity) - rank(b.severity) ||
      new Date(a.raised_at).getTime() - new Date(b.raised_at).getTime()
    );
  }

  // Update a list in place: existing cards are kept (and only moved when the order changed), so
  // focus and a half-typed comment survive every poll.
  function reconcile(list, cards, alerts, recent) {
    const wanted = new Set(alerts.map((a) => a.alert_id));
    for (const [id, card] of cards) {
      if (!wanted.has(id)) {
        card.el.remove();
        cards.delete(id);
      }
    }
    alerts.forEach((alert, index) => {
      let card = cards.get(alert.alert_id);
      if (!card) {
        card = { el: newCard(alert, recent), alert };
        cards.set(alert.alert_id, card);
      }
      card.alert = alert;
      fillCard(card.el, alert);
      if (list.children[index] !== card.el) list.insertBefore(card.el, list.children[index] || null);
    });
  }

  function clearLists() {
    for (const cards of [openCards, recentCards]) {
      for (const { el } of cards.values()) el.remove();
      cards.clear();
    }
    openIds = null;
    allFetchedAt = 0;
  }

  // ---- reading the API ---------------------------------------------------------------------

  async function getJson(path) {
    const response = await fetch(api(path), { cache: "no-store", headers: { accept: "application/json" } });
    if (response.status === 401) throw new SignedOut("Your session has ended: sign in again.");
    if (!response.ok) throw new Error(`HTTP ${response.status} from ${path.split("?")[0]}`);
    const serverDate = Date.parse(response.headers.get("date") || "");
    if (!Number.isNaN(serverDate)) {
      const offset = serverDate - Date.now();
      clockOffsetMs = Math.abs(offset) > 5000 ? offset : 0; // the header has 1 s resolution
    }
    return response.json();
  }

  // Every read of the alert list is written to the audit log, so the page reads only what it
  // needs: the open list each time, everything else when the open list changed (an alert was
  // raised, acknowledged, resolved or retracted) or every 30 s.
  async function refresh(force = false) {
    const seq = ++refreshSeq;
    const open = await getJson("v1/alerts?status=open");
    const ids = open.map((a) => a.alert_id).sort().join(" ");
    let all = null;
    if (force || ids !== openIds || Date.now() - allFetchedAt > ALL_EVERY_MS) {
      all = await getJson("v1/alerts?status=all");
    }
    if (seq < renderedSeq || !me) return; // a later refresh already drew a newer state
    renderedSeq = seq;
    openIds = ids;
    open.sort(bySeverityThenAge);
    reconcile(ui.openList, openCards, open, false);
    ui.openCount.textContent = String(open.length);
    ui.openEmpty.hidden = open.length > 0;
    document.title = `${open.length ? `(${open.length}) ` : ""}Safety desk · safetymon`;
    if (all) {
      allFetchedAt = Date.now();
      const recent = all
        .filter((a) => a.acknowledged_at)
        .sort((a, b) => new Date(b.acknowledged_at).getTime() - new Date(a.acknowledged_at).getTime())
        .slice(0, RECENT_LIMIT);
      reconcile(ui.recentList, recentCards, recent, true);
      ui.recentEmpty.hidden = recent.length > 0;
    }
    lastUpdate = new Date();
    lastError = null;
    if (detailId) {
      const card = openCards.get(detailId) || recentCards.get(detailId);
      const row = card ? JSON.stringify(card.alert) : null;
      if (force || (row && row !== detailRow)) await loadDetail(detailId);
    }
  }

  function showConnection() {
    const el = ui.connection;
    const stale = !lastUpdate || Date.now() - lastUpdate.getTime() > STALE_MS;
    let text;
    if (!me) {
      text = "Signed out";
    } else if (lastError && stale) {
      const since = lastUpdate ? `not updated since ${localTime(lastUpdate.toISOString(), true)}` : "no data yet";
      text = `Alert service: ${lastError.message}; ${since}`;
    } else if (lastUpdate) {
      text = `Live · updated ${localTime(lastUpdate.toISOString(), true)}`;
    } else {
      text = "Connecting…";
    }
    if (clockOffsetMs) text += ` · this computer's clock is ${duration(clockOffsetMs)} off; times use the server's`;
    el.textContent = text;
    el.dataset.state = !me ? "signed-out" : lastError && stale ? "error" : lastUpdate ? "live" : "connecting";
    document.body.dataset.connection = el.dataset.state; // stale lists are greyed out
  }

  function noteError(error) {
    if (error instanceof SignedOut) {
      signedOut(error.message);
      return;
    }
    // fetch rejects with a TypeError whose text depends on the browser: say it plainly
    lastError = error instanceof TypeError ? new Error("cannot be reached") : error;
    console.warn("desk: refresh failed", error);
  }

  async function poll() {
    try {
      if (me) await refresh();
    } catch (error) {
      noteError(error);
    } finally {
      showConnection();
      setTimeout(poll, POLL_MS);
    }
  }

  function tick() {
    for (const cards of [openCards, recentCards]) {
      for (const { el, alert } of cards.values()) fillTimes(el, alert);
    }
    showConnection();
  }

  // ---- signing in and out ------------------------------------------------------------------

  function accountMessage(text, kind = "error") {
    ui.accountMessage.textContent = text || "";
    ui.accountMessage.className = `banner ${kind}`;
    ui.accountMessage.hidden = !text;
  }

  function signedIn(user) {
    me = user;
    clearLists();
    ui.meUser.textContent = user.user_id;
    const site = user.site_id ? `, site ${user.site_id}` : "";
    ui.meRole.textContent = `(${ROLE_TEXT[user.role] || `${user.role}, read only`}${site})`;
    ui.signIn.hidden = true;
    ui.signedIn.hidden = false;
    ui.desk.hidden = false;
    ui.signInPassword.value = "";
    accountMessage("");
  }

  function signedOut(message) {
    me = null;
    closeDetail();
    clearLists();
    lastUpdate = null;
    lastError = null;
    ui.desk.hidden = true;
    ui.signedIn.hidden = true;
    ui.signIn.hidden = false;
    document.title = "Safety desk · safetymon";
    accountMessage(message || "Sign in to see the alerts.", message ? "error" : "info");
    showConnection();
  }

  async function whoAmI() {
    const response = await fetch(api("auth/me"), { cache: "no-store" });
    if (response.status === 401) return null;
    if (!response.ok) throw new Error(`HTTP ${response.status} from auth/me`);
    return response.json();
  }

  async function signIn(event) {
    event.preventDefault();
    const button = $("button", ui.signIn);
    button.disabled = true;
    try {
      const response = await fetch(api("auth/login"), {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ user_id: ui.signInUser.value.trim(), password: ui.signInPassword.value }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        accountMessage(`Not signed in: ${problem(body, response.status)}`);
        return;
      }
      // The cookie is set; ask who it names (it is what every later request carries).
      const user = await whoAmI();
      if (!user) {
        accountMessage("Signed in, but the browser did not keep the session cookie (is the page on HTTPS?).");
        return;
      }
      signedIn(user);
      await refresh(true);
    } catch (error) {
      noteError(error);
      if (!me) accountMessage("Could not reach the alert service. Try again.");
    } finally {
      button.disabled = false;
      showConnection();
    }
  }

  async function signOut() {
    try {
      await fetch(api("auth/logout"), { method: "POST" });
    } finally {
      signedOut("");
    }
  }

  // ---- acknowledging -----------------------------------------------------------------------

  function problem(body, status) {
    const detail = body && body.detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg || d.reason}`).join("; ");
    }
    return detail ? String(detail) : `HTTP ${status}`;
  }

  async function acknowledge(id, el) {
    const message = $(".ack-message", el);
    const button = $("form.ack button", el);
    const show = (text, kind) => {
      message.textContent = text;
      message.dataset.kind = kind;
      message.hidden = false;
    };
    const comment = $("textarea[name=comment]", el).value.trim();
    button.disabled = true;
    button.textContent = "Acknowledging…";
    try {
      // Who acknowledges is the signed-in user; the body says only why.
      const response = await fetch(api(`v1/alerts/${encodeURIComponent(id)}/acknowledge`), {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ comment }),
      });
      if (response.ok) {
        show(`Acknowledged as ${me ? me.user_id : "you"}.`, "ok");
      } else if (response.status === 401) {
        signedOut("Your session has ended: sign in again. The alert was not acknowledged.");
        return;
      } else {
        const body = await response.json().catch(() => null);
        const prefix = response.status === 409 ? "Not acknowledged: " : `Not acknowledged (${response.status}): `;
        show(prefix + problem(body, response.status), "error");
      }
    } catch (error) {
      show("Could not reach the alert service: not acknowledged. Try again.", "error");
    } finally {
      button.disabled = false;
      button.textContent = "Acknowledge";
    }
    try {
      await refresh(true);
    } catch (error) {
      noteError(error);
    }
    showConnection();
  }

  // ---- detail panel ------------------------------------------------------------------------

  function field(term, value) {
    if (value === null || value === undefined || value === "") return;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    ui.detailFields.append(dt, dd);
  }

  function item(list, text, note) {
    const li = document.createElement("li");
    li.textContent = text;
    if (note) {
      const small = document.createElement("span");
      small.className = "note";
      small.textContent = note;
      li.append(small);
    }
    list.append(li);
  }

  function renderDetail(alert) {
    ui.detail.dataset.severity = alert.severity;
    ui.detailTitle.textContent = alert.title;
    ui.detailFields.replaceChildren();
    field("Severity", String(alert.severity).toUpperCase());
    field("Status", statusText(alert.status));
    field("Subject", alert.subject_id);
    field("Site", alert.site_id);
    field("Study", alert.study_id);
    field("Rule", alert.rule_id);
    field("Occurred", localTime(alert.occurred_at));
    field("Raised", localTime(alert.raised_at, true));
    field("Deadline", deadline(alert).text);
    if (alert.escalation_tier) field("Escalation tier", alert.escalation_tier);
    field("Acknowledged by", alert.acknowledged_by);
    if (alert.acknowledged_at) field("Acknowledged at", localTime(alert.acknowledged_at, true));
    field("Comment", alert.acknowledgement_comment);
    field("Resolved by", alert.resolved_by);
    if (alert.resolved_at) field("Resolved at", localTime(alert.resolved_at, true));
    field("Resolution", alert.resolution_comment);
    ui.detailText.textContent = alert.detail || "";

    ui.detailHistory.replaceChildren();
    for (const h of alert.history || []) {
      item(ui.detailHistory, `${localTime(h.recorded_at, true)} · ${h.event_type}`, h.actor ? ` by ${h.actor}` : "");
    }
    if (!ui.detailHistory.children.length) item(ui.detailHistory, "No events recorded.");

    ui.detailNotifications.replaceChildren();
    for (const n of alert.notifications || []) {
      const when = n.sent_at ? ` ${localTime(n.sent_at, true)}` : "";
      const attempts = n.attempts > 1 ? ` after ${n.attempts} attempts` : "";
      const error = n.last_error && n.status !== "sent" ? ` (last error: ${n.last_error})` : "";
      item(ui.detailNotifications, `${n.channel} to ${n.recipient}: ${n.status}${when}${attempts}${error}`);
    }
    if (!ui.detailNotifications.children.length) item(ui.detailNotifications, "None.");
  }

  async function loadDetail(id) {
    const card = openCards.get(id) || recentCards.get(id);
    detailRow = card ? JSON.stringify(card.alert) : null;
    try {
      const alert = await getJson(`v1/alerts/${encodeURIComponent(id)}`);
      if (id !== detailId) return;
      renderDetail(alert);
      ui.detailError.hidden = true;
    } catch (error) {
      if (error instanceof SignedOut) throw error;
      if (id !== detailId) return;
      ui.detailError.textContent = `Could not load this alert (${error.message}).`;
      ui.detailError.hidden = false;
    }
  }

  function markSelected() {
    for (const cards of [openCards, recentCards]) {
      for (const [id, { el }] of cards) el.classList.toggle("selected", id === detailId);
    }
  }

  async function openDetail(id) {
    detailId = id;
    ui.detail.hidden = false;
    markSelected();
    try {
      await loadDetail(id);
    } catch (error) {
      noteError(error);
    }
  }

  function closeDetail() {
    detailId = null;
    detailRow = null;
    ui.detail.hidden = true;
    markSelected();
  }

  // ---- start -------------------------------------------------------------------------------

  ui.signIn.addEventListener("submit", signIn);
  ui.signOut.addEventListener("click", signOut);
  $("#detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && detailId) closeDetail();
  });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("#local-zone").textContent = `${zone ? `${zone}, ` : ""}${utcOffset(new Date())}`;

  async function start() {
    let user;
    try {
      user = await whoAmI();
    } catch (error) {
      noteError(error);
      showConnection();
      accountMessage("Could not reach the alert service; retrying…");
      setTimeout(start, POLL_MS);
      return;
    }
    if (user) {
      signedIn(user);
      try {
        await refresh(true);
      } catch (error) {
        noteError(error);
      }
    } else {
      signedOut("");
    }
    showConnection();
    setInterval(tick, 1000);
    setTimeout(poll, POLL_MS);
  }
  start();
})();
