const a = [x, debug];
const b = [debug, y];
const c = [x, debug /* on */, y];
