const a = () => 1;
const b = (x: number) => (y: number) => x + y;
list.map((v) => v * 2).filter(Boolean);
function plain() {}
