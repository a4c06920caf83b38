const a = require('lib');
const b = require('./local');
const c = require("pkg/sub");
