setTimeout(f, 100);
setTimeout(f, delay);
setTimeout(() => {}, 0);
