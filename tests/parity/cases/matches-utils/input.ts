console.log('top');
it('works', () => {
  console.log('in test');
});
function f() {
  console.log('in f');
}
