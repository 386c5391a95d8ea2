// MediaNest page enhancements: live updates over SSE, widget refresh, drag-and-drop order,
// confirmations, keyboard navigation of results, popups and polling (for sign-in flows that
// wait on another site). Every page works without this file.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function setUnread(count) {
  const badge = document.querySelector("[data-unread-badge]");
  if (!badge) return;
  badge.textContent = String(count);
  badge.hidden = count <= 0;
  badge.closest("a")?.setAttribute("aria-label", `Notifications, ${count} unread`);
}

async function refreshUnread() {
  const response = await fetch("/api/v1/notifications?per_page=1", {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  if (response.ok) setUnread((await response.json()).unread);
}

async function refreshWidget(card) {
  const response = await fetch(`/dashboard/widgets/${card.dataset.widget}`, {
    headers: { Accept: "text/html" },
    credentials: "same-origin",
  });
  if (!response.ok) return;
  const template = document.createElement("template");
  template.innerHTML = (await response.text()).trim();
  const fresh = template.content.querySelector("[data-widget]");
  if (fresh) card.replaceWith(fresh);
}

// A page region marked data-live-region="<name>" data-refresh-on="<event types>" is reloaded
// from the page's own address when one of those events arrives (a request's status on a list).
// Events arriving while it reloads are coalesced into one more reload.
const regionLoads = new Map();

async function refreshRegion(name) {
  if (regionLoads.has(name)) {
    regionLoads.set(name, true);
    return;
  }
  regionLoads.set(name, false);
  try {
    const response = await fetch(window.location.href, {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
    });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const selector = `[data-live-region="${CSS.escape(name)}"]`;
    const fresh = page.querySelector(selector);
    const current = document.querySelector(selector);
    if (fresh && current) current.replaceWith(document.importNode(fresh, true));
  } finally {
    const again = regionLoads.get(name);
    regionLoads.delete(name);
    if (again) refreshRegion(name);
  }
}

function connectLive() {
  if (!document.body.dataset.live || !("EventSource" in window)) return;
  const source = new EventSource("/api/v1/events");
  const types = new Set(["core.notification.created", "core.stream.reset"]);
  for (const card of document.querySelectorAll("[data-refresh-on]")) {
    for (const type of card.dataset.refreshOn.split(" ").filter(Boolean)) types.add(type);
  }
  for (const type of types) {
    source.addEventListener(type, (message) => {
      if (type === "core.notification.created") {
        const badge = document.querySelector("[data-unread-badge]");
        setUnread(Number(badge?.textContent || 0) + 1);
      }
      // core.stream.reset: the server could not replay all we missed; reload what is shown
      const reset = type === "core.stream.reset";
      if (reset) refreshUnread();
      for (const card of document.querySelectorAll("[data-refresh-on]")) {
        if (!reset && !card.dataset.refreshOn.split(" ").includes(type)) continue;
        if (card.dataset.widget) refreshWidget(card);
        else if (card.dataset.liveRegion) refreshRegion(card.dataset.liveRegion);
      }
      document.dispatchEvent(new CustomEvent("medianest:event", { detail: JSON.parse(message.data) }));
    });
  }
  window.addEventListener("beforeunload", () => source.close());
}

function enableConfirmations() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
}

function enableWidgetDragging() {
  const list = document.querySelector("[data-widget-list]");
  if (!list) return;
  let dragged = null;
  list.addEventListener("dragstart", (event) => {
    dragged = event.target.closest("[data-widget-key]");
    dragged?.classList.add("dragging");
  });
  list.addEventListener("dragover", (event) => {
    event.preventDefault();
    const over = event.target.closest("[data-widget-key]");
    if (!dragged || !over || over === dragged) return;
    const after = event.clientY > over.getBoundingClientRect().top + over.offsetHeight / 2;
    over.parentNode.insertBefore(dragged, after ? over.nextSibling : over);
  });
  list.addEventListener("dragend", async () => {
    dragged?.classList.remove("dragging");
    dragged = null;
    const order = [...list.querySelectorAll("[data-widget-key]")].map((li) => li.dataset.widgetKey);
    await fetch("/api/v1/me/dashboard", {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ order }),
    });
  });
}

function enableResultKeys() {
  const results = document.querySelector("[data-search-results]");
  if (!results) return;
  results.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = [...results.querySelectorAll("a.result")];
    const index = links.indexOf(document.activeElement);
    const next = event.key === "ArrowDown" ? index + 1 : index - 1;
    if (links[next]) {
      links[next].focus();
      event.preventDefault();
    }
  });
}

// One sign-in flow at a time on a page: its popup window and its polling. Starting another
// (a second click, a popup closed and tried again) retires the one before.
let flow = { id: 0, popup: null };

function newFlow(popup) {
  flow = { id: flow.id + 1, popup };
  return flow.id;
}

// A small window for another site, opened at about:blank in the click (so browsers allow it)
// and sent on by the caller; null when popups are blocked. It keeps its opener, as OAuth-style
// popups do: cutting it (opener = null) also cuts this page's handle in Chromium, and the page
// could no longer close the window once the person is signed in.
function openPopup(name) {
  return window.open("about:blank", name, "popup,width=600,height=720");
}

// <a href="…" data-popup="URL" data-popup-name="NAME">: open URL in a small window. When the
// browser blocks popups the link is followed as usual (its href is the full-page fallback).
function enablePopups() {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-popup]");
    if (!link) return;
    const popup = openPopup(link.dataset.popupName || "medianest-popup");
    if (!popup) return;
    event.preventDefault();
    popup.location.href = link.dataset.popup || link.href;
    const box = link.closest("[data-poll-url]");
    if (box) {
      startPolling(box, popup);
    } else {
      newFlow(popup);
    }
  });
}

function startPolling(box, popup = null) {
  const every = Math.max(1, Number(box.dataset.pollSeconds || 2)) * 1000;
  poll(newFlow(popup), box.dataset.pollUrl, box.querySelector("[data-poll-status]"), every);
}

// Poll `url` for JSON every `every` ms while flow `id` is the current one: {"state":
// "waiting"} keeps asking (showing its "warning", if any); {"redirect": "/x"} goes there;
// {"state": "failed", "title", "message", "retry_url"} shows why in `status` and stops;
// {"state": "superseded"} (a newer attempt took over) stops quietly. An answer that is not
// JSON (a proxy's error page) or no answer is retried, more gently, a few times.
function poll(id, url, status, every) {
  let troubles = 0;
  const current = () => flow.id === id;
  const finish = () => flow.popup?.close();
  const ask = async () => {
    if (!current()) return;
    let body = null;
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      body = await response.json();
      troubles = 0;
    } catch {
      troubles += 1;
      if (troubles > 5) {
        finish();
        showProblem(status, { message: "The server is not answering. Try again in a moment." });
      } else {
        setTimeout(ask, every * 2);
      }
      return;
    }
    if (!current() || body.state === "superseded") return;
    if (body.redirect) {
      finish();
      window.location.assign(body.redirect);
    } else if (body.state === "failed") {
      finish();
      showProblem(status, body);
    } else {
      if (status && body.warning) status.textContent = body.warning;
      setTimeout(ask, every);
    }
  };
  setTimeout(ask, every);
}

function showProblem(status, body) {
  if (!status) return;
  status.closest("section")?.classList.add("error");
  status.textContent = body.title ? `${body.title}: ${body.message}` : String(body.message);
  if (body.retry_url) {
    const again = document.createElement("a");
    again.href = body.retry_url;
    again.className = "button";
    again.textContent = "Try again";
    status.append(" ", again);
  }
}

// <section data-poll-url="URL" data-poll-seconds="N">: a page that waits on another site.
function enablePolling() {
  const box = document.querySelector("[data-poll-url]");
  if (box) startPolling(box);
}

// <a href="START" data-popup-flow="START">: sign in with another site in a popup, staying on
// this page (see LoginProvider.popup). START (as JSON) says where to send the popup and what
// to poll. With popups blocked, START?redirect=1 takes the whole page there and back.
function enablePopupFlows() {
  document.addEventListener("click", async (event) => {
    const link = event.target.closest("a[data-popup-flow]");
    if (!link) return;
    event.preventDefault();
    const start = new URL(link.dataset.popupFlow, window.location.href);
    const popup = openPopup("medianest-signin");
    if (!popup) {
      start.searchParams.set("redirect", "1");
      window.location.assign(start);
      return;
    }
    const id = newFlow(popup);
    const status = document.querySelector("[data-poll-status]");
    status?.closest("section")?.classList.remove("error");
    let started = null;
    try {
      const response = await fetch(start, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      started = await response.json();
      if (!response.ok || !started.popup_url) throw started;
    } catch (problem) {
      if (flow.id !== id) return;
      popup.close();
      showProblem(status, problem?.message ? problem : { message: "Could not start signing in." });
      return;
    }
    if (flow.id !== id) return;
    popup.location.href = started.popup_url;
    if (status) status.textContent = "Waiting for you to sign in in the other window…";
    poll(id, started.poll_url, status, 2000);
  });
}

connectLive();
enablePopups();
enablePopupFlows();
enablePolling();
enableConfirmations();
enableWidgetDragging();
enableResultKeys();
