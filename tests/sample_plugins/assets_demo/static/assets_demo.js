// proves in a browser that a plugin's module script runs under the page security policy
for (const element of document.querySelectorAll("[data-assets-demo]")) {
  element.textContent = "The script ran.";
}
