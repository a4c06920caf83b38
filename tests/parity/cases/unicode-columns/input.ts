const s = '日本語'; emit(s);
const t = "émoji 🎉"; emit('ü'); emit(t);
// commentaire français: emit(x) ne compte pas
emit('🎉🎉');
