const oldValue = 1;
oldFn(oldValue, older, bold);
const x = { oldKey: oldValue };
