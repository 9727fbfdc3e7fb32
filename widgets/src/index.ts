// consortium_lab ChatWidget front end (anywidget): the entry point. The chat itself is
// app.ts (ChatApp).

import "./styles.css";
import "./view.css";
import { ChatApp } from "./app";
import type { RenderProps } from "@anywidget/types";
import type { ChatModel } from "./messages.gen";

export { ChatApp };
export type { Model } from "./app";

// -- anywidget entry --------------------------------------------------------------------------

function render({ model, el }: Pick<RenderProps<ChatModel>, "model" | "el">): () => void {
  const app = new ChatApp(model);
  el.classList.add("cl-host");
  el.replaceChildren(app.root);
  app.start();
  return () => app.dispose();
}

// Only the default export: anywidget warns (in every page's console) that a named `render`
// export is deprecated.
export default { render };
