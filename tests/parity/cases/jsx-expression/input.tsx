export const V = ({ ok, items }: P) => (
  <ul>
    {ok && <li>yes</li>}
    {items.length > 0 && items.map((i) => <li key={i}>{i}</li>)}
    {ok ? 1 : 2}
  </ul>
);
