/* Vestibule pages: optional progressive enhancement. Every page works without this
 * script; it only adds a "copy key" button on the setup page and a countdown to the
 * next code on the code forms. Texts come from data- attributes (already translated). */
(function () {
  "use strict";

  function copyButton() {
    var box = document.querySelector(".secret[data-copy-label]");
    var code = document.getElementById("totp-secret");
    if (!box || !code || !navigator.clipboard) { return; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary copy";
    button.textContent = box.getAttribute("data-copy-label");
    var status = document.createElement("span");
    status.className = "copied";
    status.setAttribute("role", "status");
    button.addEventListener("click", function () {
      var key = code.textContent.replace(/\s+/g, "");
      navigator.clipboard.writeText(key).then(function () {
        status.textContent = box.getAttribute("data-copied-label");
      });
    });
    box.appendChild(document.createTextNode(" "));
    box.appendChild(button);
    box.appendChild(status);
  }

  function countdown() {
    var form = document.querySelector("form[data-period][data-countdown]");
    if (!form) { return; }
    var period = parseInt(form.getAttribute("data-period"), 10);
    var template = form.getAttribute("data-countdown");
    if (!(period > 0) || !template) { return; }
    var out = document.createElement("p");
    out.className = "countdown";
    out.setAttribute("aria-hidden", "true");
    var button = form.querySelector("button[type=submit]");
    form.insertBefore(out, button);
    function tick() {
      var now = Math.floor(Date.now() / 1000);
      var left = period - (now % period);
      out.textContent = template.replace("{0}", String(left));
    }
    tick();
    window.setInterval(tick, 1000);
  }

  copyButton();
  countdown();
})();
