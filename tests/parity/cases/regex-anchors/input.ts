const q = `SELECT * FROM t`;
const r = `
  SELECT 1`;
const s = `-- x
SELECT 2`;
