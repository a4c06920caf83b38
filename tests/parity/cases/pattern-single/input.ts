console.log(1);
console.log('two', 2);
function f(x: number) {
  console.log(x + 1);
  return console.log;
}
