// "Test connection" on a plugin's settings form without leaving the page: the values typed so
// far (a token included) stay in the form while the server tries them. Without this file the
// button posts the form and the page comes back with the result (secrets then retyped).

function resultList(results) {
  const list = document.createElement("ul");
  list.className = "checks";
  list.dataset.testResult = "";
  for (const result of results) {
    const item = document.createElement("li");
    const tag = document.createElement("span");
    tag.className = `tag ${result.status === "up" ? "ok" : "danger"}`;
    tag.textContent = { up: "works", down: "failed" }[result.status] ?? result.status;
    item.append(tag);
    if (result.name !== "connection") {
      const name = document.createElement("strong");
      name.textContent = ` ${result.name}`;
      item.append(name);
    }
    item.append(` ${result.message}`);
    if (result.latency_ms !== null && result.latency_ms !== undefined) {
      const latency = document.createElement("span");
      latency.className = "muted small";
      latency.textContent = ` (${result.latency_ms} ms)`;
      item.append(latency);
    }
    list.append(item);
  }
  return list;
}

function problem(text) {
  const paragraph = document.createElement("p");
  paragraph.className = "alert";
  paragraph.setAttribute("role", "alert");
  paragraph.textContent = text;
  return paragraph;
}

async function testConnection(button) {
  const form = button.form;
  const output = form.querySelector("[data-test-output]");
  if (!output) return false;
  button.disabled = true;
  const label = button.textContent;
  button.textContent = "Testing…";
  try {
    const response = await fetch(button.formAction, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      output.replaceChildren(resultList(body.results || []));
    } else {
      const details = body.error?.details;
      const fields = details && typeof details === "object" ? Object.keys(details).join(", ") : "";
      const message = body.error?.message || `The test could not run (HTTP ${response.status}).`;
      output.replaceChildren(problem(fields ? `${message} (${fields})` : message));
    }
  } catch {
    output.replaceChildren(problem("MediaNest could not be reached to run the test."));
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
  return true;
}

for (const button of document.querySelectorAll("[data-test-connection]")) {
  button.addEventListener("click", (event) => {
    event.preventDefault();
    testConnection(button);
  });
}
