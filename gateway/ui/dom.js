// MOM dashboard: small helpers to build the page's elements and format figures. Text always
// goes in as text (never as HTML), so names and payloads cannot inject markup.

/**
 * `el("td", {class: "x", dataset: {field: "ready"}, title: "…"}, "text", otherElement)`.
 * Attributes that are null, undefined or false are left out.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replaces a table's body rows; shows `empty` in one wide cell when there are none. */
export function fillTable(table, rows, empty) {
  const body = table.tBodies[0];
  const columns = table.tHead.rows[0].cells.length;
  if (rows.length === 0) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: columns }, empty)));
  } else {
    body.replaceChildren(...rows);
  }
}

/** Replaces a `<select>`'s options only when they changed, keeping the user's choice. */
export function setOptions(select, options) {
  const wanted = options.map(([value, label]) => `${value}\u0000${label}`).join("\u0001");
  if (select.dataset.options === wanted) return;
  const chosen = select.value;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value }, label)));
  if (options.some(([value]) => value === chosen)) select.value = chosen;
  select.dataset.options = wanted;
}

/** Fills a `<datalist>` with names (suggestions for the forms' inputs). */
export function setSuggestions(datalist, names) {
  datalist.replaceChildren(...names.map((name) => el("option", { value: name })));
}

/** `12`, `3.4k`, `5.6M`. */
export function count(n) {
  if (n === null || n === undefined) return "—";
  if (n < 10_000) return String(n);
  if (n < 10_000_000) return `${(n / 1000).toFixed(1)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

/** Messages per second, or a dash when there is no earlier reading to compare with yet. */
export function rate(perSecond) {
  if (perSecond === null || perSecond === undefined) return "—";
  if (perSecond === 0) return "0/s";
  if (perSecond < 10) return `${perSecond.toFixed(1)}/s`;
  return `${count(Math.round(perSecond))}/s`;
}

export function time(ms) {
  return new Date(ms).toLocaleTimeString();
}

export function dateTime(ms) {
  return new Date(ms).toLocaleString();
}
