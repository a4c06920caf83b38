get_user_name(id);
plain(1);
set_value_now(1, 2);
