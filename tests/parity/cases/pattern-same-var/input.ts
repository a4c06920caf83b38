if (x === x) {}
if (x === y) {}
if (obj.v === obj.v) {}
if (obj.v === obj.w) {}
