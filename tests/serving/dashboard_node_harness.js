// Runs the dashboard's script in Node against a live stats URL with a minimal DOM (elements by id,
// text and attributes only), then prints the banner state as JSON after the given seconds.
// Usage: node dashboard_node_harness.js SCRIPT.js CONFIG_JSON SECONDS
"use strict";
const fs = require("fs");
const [, , scriptPath, config, seconds] = process.argv;

class Node {
  constructor(tag) {
    this.tag = tag;
    this.children = [];
    this.attrs = {};
    this.style = {};
    this.hidden = true;
    this.textContent = "";
  }
  setAttribute(key, value) { this.attrs[key] = value; }
  getAttribute(key) { return this.attrs[key]; }
  appendChild(kid) { this.children.push(kid); return kid; }
  append(...kids) { this.children.push(...kids); }
  replaceChildren(...kids) { this.children = kids; }
}
const byId = {};
globalThis.Node = Node;
globalThis.document = {
  getElementById: (id) => (byId[id] ||= new Node("div")),
  createElement: (tag) => new Node(tag),
  createElementNS: (_, tag) => new Node(tag),
  createTextNode: (text) => Object.assign(new Node("#text"), {textContent: text}),
};
const source = fs.readFileSync(scriptPath, "utf8").replace("__CONFIG__", config);
new Function(source)();
setTimeout(() => {
  const error = byId.error || new Node("div");
  const updated = byId.updated || new Node("div");
  console.log(JSON.stringify({hidden: error.hidden, banner: error.textContent, updated: updated.textContent}));
  process.exit(0);
}, Number(seconds) * 1000);
