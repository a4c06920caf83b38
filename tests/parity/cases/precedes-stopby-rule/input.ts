const a = 1;
other();
use(a);
const b = 2;
reset();
use(b);
const c = 3;
use(c);
