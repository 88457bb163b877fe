// Explanations dashboard for keras_interp: the module TensorBoard loads (render()). It asks for
// /runs first and loads the page's modules (app.js and what it imports) meanwhile, so the first
// answer does not wait for a dozen module requests; app.js builds the page.

import { getJSON } from "./util.js";

export async function render() {
  const answers = Promise.all([
    getJSON("./runs"),
    getJSON("../../runs").catch(() => []),  // TensorBoard's own run list: its colour order
  ]);
  answers.catch(() => {});  // a failure is reported by start(), which awaits it
  const { start } = await import("./app.js");
  return start(answers);
}
