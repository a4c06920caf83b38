useState(0);
useEffect(() => {}, []);
user(1);
notAHook();
