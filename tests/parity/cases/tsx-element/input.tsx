export function A() {
  return (
    <div>
      <img src="a.png" />
      <Img />
    </div>
  );
}
