const config = { retries: 3, verbose: true, name, nested: { depth: 2 } };
function f() {
  const inner = { a: 1, b };
}
