# Stub of OpenWrt's procd helpers for the package check: every call is recorded in /tmp/procd.log.
procd_open_instance() { echo "open_instance $*" >> /tmp/procd.log; }
procd_set_param() { echo "set_param $*" >> /tmp/procd.log; }
procd_close_instance() { echo "close_instance" >> /tmp/procd.log; }
procd_send_signal() { echo "send_signal $*" >> /tmp/procd.log; }
procd_add_reload_trigger() { echo "reload_trigger $*" >> /tmp/procd.log; }
procd_add_interface_trigger() { echo "interface_trigger $*" >> /tmp/procd.log; }
