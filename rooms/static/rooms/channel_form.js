// The channel form: the provider choices follow the channel type, and only the chosen provider's
// section (its config fields and secrets) shows. The server does the same on each load and checks
// everything on save; this only saves a reload.
document.addEventListener("DOMContentLoaded", () => {
  "use strict";
  const type = document.getElementById("id_channel_type");
  const provider = document.getElementById("id_provider");
  if (!type || !provider || provider.tagName !== "SELECT") return;
  function sync() {
    for (const option of provider.options) {
      if (!option.dataset.channelTypes) continue;
      const serves = !type.value || option.dataset.channelTypes.split(" ").includes(type.value);
      option.hidden = option.disabled = !serves;
    }
    const chosen = provider.selectedOptions[0];
    if (chosen && chosen.disabled) provider.value = "";
    for (const section of document.querySelectorAll("fieldset.rk-provider")) {
      const mine = section.classList.contains("rk-provider-" + provider.value);
      section.hidden = !mine;
      const details = section.querySelector("details");
      if (mine && details) details.open = true;
    }
  }
  type.addEventListener("change", sync);
  provider.addEventListener("change", sync);
  sync();
});
