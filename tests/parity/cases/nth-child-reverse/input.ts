const a = [1, 2, 3];
const b = [4];
const c = [5, 'x'];
