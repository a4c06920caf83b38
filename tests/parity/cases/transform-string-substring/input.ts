env('HOME');
env("API_KEY");
const x = env('é_ü_PATH');
