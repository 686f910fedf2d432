// The safety desk page. Signs in (a session cookie the page's script cannot read), then reads the
// alert API and updates the lists in place every 2 s, so a comment being typed survives the
// updates. Safety physicians acknowledge and resolve alerts with a comment; anyone signed in opens
// an alert's history and a subject's timeline. Every value from the server is written with
// textContent or as an attribute value, never as markup.
"use strict";

(() => {
  const POLL_MS = 2000; // the open list
  const ALL_EVERY_MS = 30000; // the recently acknowledged list, unless the open list changed
  const STALE_MS = 10000;
  const RECENT_LIMIT = 20; // resolved (or retracted) alerts kept in view; acknowledged ones all stay
  const PAGE_LIMIT = 500; // alerts per list read: the most the API serves in one page
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
  const OPEN_STATUSES = ["raised", "notified"];
  const ACTIONS = {
    acknowledge: { label: "Acknowledge", doing: "Acknowledging…", done: "Acknowledged", refused: "Not acknowledged" },
    resolve: { label: "Resolve", doing: "Resolving…", done: "Resolved", refused: "Not resolved" },
  };
  // A subject's timeline: the kinds the API sends, in the order the page shows items of one instant
  // (a lab before the grade-driven decision and the alert it caused), and their small labels.
  const KINDS = ["lab", "adverse event", "dose", "dose decision", "signal", "alert"];
  const KIND_LABEL = {
    lab: "Lab",
    "adverse event": "Adverse event",
    dose: "Dose",
    "dose decision": "Dose decision",
    signal: "Signal",
    alert: "Alert",
  };

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
    side: $(".side"),
    detail: $("#detail"),
    detailTitle: $("#detail-title"),
    detailError: $("#detail-error"),
    detailFields: $("#detail-fields"),
    detailText: $("#detail-text"),
    detailHistory: $("#detail-history"),
    detailNotifications: $("#detail-notifications"),
    actionMessage: $("#action-message"),
    actionText: $("#action-text"),
    openMore: $("#open-more"),
    recentMore: $("#recent-more"),
    timeline: $("#timeline"),
    timelineSubject: $("#timeline-subject"),
    timelineLegend: $("#timeline-legend"),
    timelineMessage: $("#timeline-message"),
    timelineList: $("#timeline-list"),
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
  let timelineSubject = null; // the subject whose timeline is open
  let timelineAlerts = null; // its alerts as the lists last showed them, to notice a change
  let timelineSeq = 0;
  const panels = []; // the open side panels, most recent last (Escape closes the last)

  const now = () => Date.now() + clockOffsetMs;

  class SignedOut extends Error {}

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

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
  const isOpen = (alert) => OPEN_STATUSES.includes(alert.status);
  const quoted = (comment) => (comment ? ` — “${comment}”` : "");

  function setText(root, selector, text) {
    const el = $(selector, root);
    if (el.textContent !== text) el.textContent = text;
    return el;
  }

  // ---- alert cards -------------------------------------------------------------------------

  function newCard(alert) {
    const el = ui.template.content.firstElementChild.cloneNode(true);
    const id = alert.alert_id;
    el.dataset.alertId = id;
    $(".open-detail", el).addEventListener("click", () => openDetail(id));
    $(".open-timeline", el).addEventListener("click", () => openTimeline(alert.subject_id));
    $(".alert-main", el).addEventListener("click", (event) => {
      if (!event.target.closest("button")) openDetail(id);
    });
    const form = $("form.ack", el);
    if (!canAcknowledge()) {
      form.remove();
    } else {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const action = event.submitter && event.submitter.value === "resolve" ? "resolve" : "acknowledge";
        act(action, id, el);
      });
    }
    return el;
  }

  // What a physician can still do with an alert: acknowledge or resolve an open one, resolve an
  // acknowledged one. A resolved or retracted alert is final, so its card loses the form.
  function fillActions(el, alert) {
    const form = $("form.ack", el);
    if (!form) return;
    if (!isOpen(alert) && alert.status !== "acknowledged") {
      form.remove();
      return;
    }
    $('button[value="acknowledge"]', form).hidden = !isOpen(alert);
    const textarea = $("textarea[name=comment]", form);
    const placeholder = isOpen(alert) ? "What was done; to resolve, why it can be closed" : "Why it can be closed";
    if (textarea.placeholder !== placeholder) textarea.placeholder = placeholder;
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
    $(".resolved", el).hidden = !alert.resolved_by;
    if (alert.resolved_by) {
      setText(
        el,
        ".resolved",
        `Resolved by ${alert.resolved_by} at ${localTime(alert.resolved_at)}${quoted(alert.resolution_comment)}`
      );
    }
    el.classList.toggle("selected", alert.alert_id === detailId);
    fillActions(el, alert);
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
  function reconcile(list, cards, alerts) {
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
        card = { el: newCard(alert), alert };
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

  async function getResponse(path) {
    const response = await fetch(api(path), { cache: "no-store", headers: { accept: "application/json" } });
    if (response.status === 401) throw new SignedOut("Your session has ended: sign in again.");
    if (!response.ok) throw new HttpError(response.status, `HTTP ${response.status} from ${path.split("?")[0]}`);
    const serverDate = Date.parse(response.headers.get("date") || "");
    if (!Number.isNaN(serverDate)) {
      const offset = serverDate - Date.now();
      clockOffsetMs = Math.abs(offset) > 5000 ? offset : 0; // the header has 1 s resolution
    }
    return response;
  }

  async function getJson(path) {
    return (await getResponse(path)).json();
  }

  // One page of alerts, and how many match in all (X-Total-Count, when the API sends it), so the
  // page can say when it does not show every one.
  async function getAlerts(status) {
    const response = await getResponse(`v1/alerts?status=${status}&limit=${PAGE_LIMIT}`);
    const alerts = await response.json();
    const total = Number.parseInt(response.headers.get("x-total-count") || "", 10);
    return { alerts, total: Number.isNaN(total) ? alerts.length : Math.max(total, alerts.length) };
  }

  // Acknowledged alerts, all of them: they are still someone's work and are resolved from here.
  // Resolved alerts stay too, marked resolved, rather than vanishing: the physician who resolved
  // one sees at once that it took, by whom and with which comment, and the desk sees what was
  // closed lately and why; they are final, so they carry no form. Most recent action first.
  function recentOf(all) {
    const lastAction = (a) =>
      Math.max(new Date(a.acknowledged_at || 0).getTime(), new Date(a.resolved_at || 0).getTime());
    let closed = 0;
    return all
      .filter((a) => a.acknowledged_at || a.resolved_at)
      .sort((a, b) => lastAction(b) - lastAction(a))
      .filter((a) => a.status === "acknowledged" || ++closed <= RECENT_LIMIT);
  }

  // Every read of the alert list is written to the audit log, so the page reads only what it
  // needs: the open list each time, everything else when the open list changed (an alert was
  // raised, acknowledged, resolved or retracted) or every 30 s.
  async function refresh(force = false) {
    const seq = ++refreshSeq;
    const { alerts: open, total: openTotal } = await getAlerts("open");
    const ids = open.map((a) => a.alert_id).sort().join(" ");
    let all = null;
    if (force || ids !== openIds || Date.now() - allFetchedAt > ALL_EVERY_MS) {
      all = await getAlerts("all");
    }
    if (seq < renderedSeq || !me) return; // a later refresh already drew a newer state
    renderedSeq = seq;
    openIds = ids;
    open.sort(bySeverityThenAge);
    reconcile(ui.openList, openCards, open);
    ui.openCount.textContent = String(openTotal);
    // Never silently fewer than there are: an open alert out of view is an alert nobody sees.
    ui.openMore.hidden = openTotal <= open.length;
    ui.openMore.textContent = `Showing ${open.length} of ${openTotal} open alerts: the most severe and oldest.`;
    ui.openEmpty.hidden = openTotal > 0;
    document.title = `${openTotal ? `(${openTotal}) ` : ""}Safety desk · safetymon`;
    if (all) {
      allFetchedAt = Date.now();
      const recent = recentOf(all.alerts);
      reconcile(ui.recentList, recentCards, recent);
      ui.recentEmpty.hidden = recent.length > 0;
      ui.recentMore.hidden = all.total <= all.alerts.length;
      ui.recentMore.textContent =
        `Read from the first ${all.alerts.length} of ${all.total} alerts (most severe, then oldest): ` +
        "some may be missing here.";
    }
    lastUpdate = new Date();
    lastError = null;
    if (detailId) {
      const card = openCards.get(detailId) || recentCards.get(detailId);
      const row = card ? JSON.stringify(card.alert) : null;
      if (force || (row && row !== detailRow)) await loadDetail(detailId);
    }
    // The timeline shows its subject's alerts with their status: read it again when one changed
    // (each read is audited, so not on every poll).
    if (timelineSubject) {
      const shown = subjectAlerts(timelineSubject);
      if (timelineAlerts !== null && shown !== timelineAlerts) await loadTimeline(timelineSubject);
      timelineAlerts = shown;
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
    closeTimeline();
    actionMessage("");
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

  function actionMessage(text) {
    ui.actionText.textContent = text || "";
    ui.actionMessage.hidden = !text;
  }

  // Who took or closed an alert, for a refusal (409) whose text does not say.
  async function closedBy(id) {
    try {
      const alert = await getJson(`v1/alerts/${encodeURIComponent(id)}`);
      if (alert.resolved_by) {
        const why = alert.resolution_comment ? ` (“${alert.resolution_comment}”)` : "";
        return `resolved by ${alert.resolved_by} at ${localTime(alert.resolved_at)}${why}`;
      }
      if (alert.status === "retracted") return "retracted: the data behind it was corrected";
      if (alert.acknowledged_by) {
        return `acknowledged by ${alert.acknowledged_by} at ${localTime(alert.acknowledged_at)}`;
      }
    } catch (error) {
      if (error instanceof SignedOut) throw error;
    }
    return null;
  }

  // Acknowledge or resolve, as the signed-in user (the body says only why). A refusal is shown on
  // the card and in a banner above the lists: the card may leave its list at the next update, and
  // the comment that was not saved is repeated there so it is not lost.
  async function act(action, id, el) {
    const words = ACTIONS[action];
    const message = $(".ack-message", el);
    const textarea = $("textarea[name=comment]", el);
    const buttons = [...el.querySelectorAll("form.ack button")];
    const button = $(`form.ack button[value="${action}"]`, el);
    const show = (text, kind) => {
      message.textContent = text;
      message.dataset.kind = kind;
      message.hidden = false;
    };
    const comment = textarea.value.trim();
    if (action === "resolve" && !comment) {
      // A closed safety alert without a reason cannot be reviewed later: the page asks for one.
      show("Write why it can be closed: resolving needs a comment.", "error");
      textarea.focus();
      return;
    }
    const card = openCards.get(id) || recentCards.get(id);
    const title = card ? card.alert.title : id;
    for (const b of buttons) b.disabled = true;
    button.textContent = words.doing;
    try {
      const response = await fetch(api(`v1/alerts/${encodeURIComponent(id)}/${action}`), {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ comment }),
      });
      if (response.ok) {
        show(`${words.done} as ${me ? me.user_id : "you"}.`, "ok");
        textarea.value = "";
      } else if (response.status === 401) {
        signedOut(`Your session has ended: sign in again. The alert was not ${words.done.toLowerCase()}.`);
        return;
      } else {
        const body = await response.json().catch(() => null);
        const code = response.status === 409 ? "" : ` (${response.status})`;
        let text = `${words.refused}${code}: ${problem(body, response.status)}`;
        if (response.status === 409) {
          const who = await closedBy(id);
          if (who) {
            // The server names who; the page adds when and why. Otherwise it adds all three.
            const name = who.split(" at ")[0];
            text += text.endsWith(name) ? who.slice(name.length) : ` — ${who}`;
          }
        }
        show(text, "error");
        const lost = comment ? ` Your comment was not saved: “${comment}”` : "";
        actionMessage(`${title}: ${text}.${lost}`);
      }
    } catch (error) {
      if (error instanceof SignedOut) {
        signedOut(error.message);
        return;
      }
      show(`Could not reach the alert service: not ${words.done.toLowerCase()}. Try again.`, "error");
    } finally {
      for (const b of buttons) b.disabled = false;
      button.textContent = words.label;
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
    subjectButton(ui.detailFields.lastElementChild, alert.subject_id);
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
      // One per recipient and state change (raised, acknowledged, resolved, escalated).
      const about = n.alert_state ? `${n.alert_state}: ` : "";
      item(ui.detailNotifications, `${about}${n.channel} to ${n.recipient}: ${n.status}${when}${attempts}${error}`);
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

  function subjectButton(dd, subjectId) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "open-timeline link";
    button.title = "Open this subject's timeline";
    button.textContent = subjectId;
    button.addEventListener("click", () => openTimeline(subjectId));
    dd.replaceChildren(button);
  }

  function markSelected() {
    for (const cards of [openCards, recentCards]) {
      for (const [id, { el }] of cards) el.classList.toggle("selected", id === detailId);
    }
  }

  // The panel opened last goes on top of the side column, in view: a subject's timeline opened
  // from an alert's detail is not left below it, out of sight.
  function showPanel(panel) {
    const at = panels.indexOf(panel);
    if (at >= 0) panels.splice(at, 1);
    panels.push(panel);
    if (ui.side.firstElementChild !== panel) ui.side.prepend(panel);
    panel.hidden = false;
    ui.side.scrollTop = 0;
    panel.scrollIntoView({ block: "nearest" });
  }

  function hidePanel(panel) {
    const at = panels.indexOf(panel);
    if (at >= 0) panels.splice(at, 1);
    panel.hidden = true;
  }

  async function openDetail(id) {
    detailId = id;
    showPanel(ui.detail);
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
    hidePanel(ui.detail);
    markSelected();
  }

  // ---- subject timeline --------------------------------------------------------------------

  // The subject's alerts as the lists show them, to notice when the timeline's are out of date.
  function subjectAlerts(subjectId) {
    const mine = [];
    for (const cards of [openCards, recentCards]) {
      for (const { alert } of cards.values()) {
        if (alert.subject_id === subjectId) mine.push(`${alert.alert_id}:${alert.status}`);
      }
    }
    return mine.sort().join(" ");
  }

  const kindSlug = (kind) => String(kind).replace(/[^a-z]+/gi, "-").toLowerCase();
  const kindRank = (kind) => (KINDS.includes(kind) ? KINDS.indexOf(kind) : KINDS.length);
  const kindLabel = (kind) => KIND_LABEL[kind] || String(kind);

  function chip(className, text) {
    const span = document.createElement("span");
    span.className = className;
    span.textContent = text;
    return span;
  }

  function timelineItem(item) {
    const li = document.createElement("li");
    li.className = "event";
    li.dataset.kind = kindSlug(item.kind);
    if (item.retracted) li.classList.add("retracted");

    const when = document.createElement("time");
    when.className = "when";
    when.dateTime = String(item.at);
    when.textContent = localTime(item.at);
    const kind = chip("kind", kindLabel(item.kind));

    const what = document.createElement("div");
    what.className = "what";
    if (item.kind === "alert" && item.id) {
      const open = document.createElement("button");
      open.type = "button";
      open.className = "text link";
      open.title = "Open this alert";
      open.textContent = item.text;
      open.addEventListener("click", () => openDetail(String(item.id)));
      what.append(open);
    } else {
      what.append(chip("text", item.text));
    }
    if (item.visit) what.append(" ", chip("visit", item.visit));
    if (item.kind === "alert") {
      const severity = chip("severity", String(item.severity || "").toUpperCase());
      severity.dataset.severity = item.severity;
      what.append(" ", severity, " ", chip("state", statusText(item.status)));
    }
    if (item.retracted) what.append(" ", chip("retracted-note", "retracted"));
    // The grades sit with their lab. Repeats are shown once: the log is at-least-once, and a
    // redelivered grade is the same grade.
    const grades = [...new Set((item.grades || []).map(String))];
    if (grades.length) {
      const list = document.createElement("ul");
      list.className = "grades";
      for (const grade of grades) {
        const li2 = document.createElement("li");
        li2.className = "grade";
        li2.textContent = grade;
        const number = /grade (\d)\b/i.exec(grade);
        if (number) li2.dataset.grade = number[1];
        list.append(li2);
      }
      what.append(list);
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.append(when, kind);
    li.append(meta, what);
    return li;
  }

  function renderTimeline(items) {
    // Oldest first; items of one instant in clinical order (the lab, then what it caused). An item
    // read twice from the log (same id) is shown once.
    const seen = new Set();
    const unique = items.filter((item) => {
      const key = item.id === undefined || item.id === null ? null : `${item.kind}:${item.id}`;
      if (key === null) return true;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    const sorted = unique
      .map((item, index) => ({ item, index, at: new Date(item.at).getTime() }))
      .sort((a, b) => a.at - b.at || kindRank(a.item.kind) - kindRank(b.item.kind) || a.index - b.index)
      .map(({ item }) => item);
    ui.timelineList.replaceChildren(...sorted.map(timelineItem));

    const counts = new Map();
    for (const item of sorted) counts.set(item.kind, (counts.get(item.kind) || 0) + 1);
    const kinds = [...counts.keys()].sort((a, b) => kindRank(a) - kindRank(b));
    ui.timelineLegend.replaceChildren(
      ...kinds.map((kind) => {
        const li = document.createElement("li");
        li.dataset.kind = kindSlug(kind);
        li.append(chip("kind", kindLabel(kind)), ` ${counts.get(kind)}`);
        return li;
      })
    );
    timelineNote(sorted.length ? "" : "Nothing recorded for this subject yet.");
  }

  function timelineNote(text) {
    ui.timelineMessage.textContent = text;
    ui.timelineMessage.hidden = !text;
  }

  async function loadTimeline(subjectId) {
    const seq = ++timelineSeq;
    try {
      const items = await getJson(`v1/subjects/${encodeURIComponent(subjectId)}/timeline`);
      if (seq !== timelineSeq || subjectId !== timelineSubject) return;
      renderTimeline(Array.isArray(items) ? items : []);
    } catch (error) {
      if (error instanceof SignedOut) throw error;
      if (seq !== timelineSeq || subjectId !== timelineSubject) return;
      ui.timelineList.replaceChildren();
      ui.timelineLegend.replaceChildren();
      // 404: no events, or none this user may see; the API does not say which, nor does the page.
      timelineNote(
        error instanceof HttpError && error.status === 404
          ? `No events recorded for subject ${subjectId} that you can see.`
          : `Could not load the timeline (${error instanceof TypeError ? "cannot reach the service" : error.message}).`
      );
    }
  }

  async function openTimeline(subjectId) {
    const other = subjectId !== timelineSubject;
    timelineSubject = subjectId;
    timelineAlerts = subjectAlerts(subjectId);
    ui.timelineSubject.textContent = subjectId;
    if (other) {
      ui.timelineList.replaceChildren();
      ui.timelineLegend.replaceChildren();
      timelineNote("Loading…");
    }
    showPanel(ui.timeline);
    try {
      await loadTimeline(subjectId);
    } catch (error) {
      noteError(error);
    }
  }

  function closeTimeline() {
    timelineSubject = null;
    timelineAlerts = null;
    timelineSeq++;
    hidePanel(ui.timeline);
  }

  // ---- start -------------------------------------------------------------------------------

  ui.signIn.addEventListener("submit", signIn);
  ui.signOut.addEventListener("click", signOut);
  $("#detail-close").addEventListener("click", closeDetail);
  $("#timeline-close").addEventListener("click", closeTimeline);
  $("#action-dismiss").addEventListener("click", () => actionMessage(""));
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !panels.length) return;
    if (panels[panels.length - 1] === ui.timeline) closeTimeline();
    else closeDetail();
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
