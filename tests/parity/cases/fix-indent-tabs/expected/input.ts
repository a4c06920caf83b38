function f() {
	if (DEBUG) {
	  console.log(1);
	};
	if (x) {
		if (DEBUG) {
		  console.log(2);
		};
	}
}
