console.log(1);
console.error(2);
console.warn(3);
