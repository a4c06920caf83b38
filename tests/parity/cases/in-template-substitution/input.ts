const a = `key: ${secret(k)} and ${other(secret(j))}`;
const b = secret(z);
