const a = 1;
other();
use(a);
reset();
use(b);
const c = 3;
use(c);
