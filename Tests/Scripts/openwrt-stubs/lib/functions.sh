# Stub of OpenWrt's /lib/functions.sh for the package check: the UCI helpers init scripts use,
# reading what `uci export` prints (package/config/option/list lines, evaluated as commands).
CONFIG_SECTION=""
CONFIG_LIST_STATE=""
package() { :; }
config() { CONFIG_SECTION="$2"; eval "CONFIG_${CONFIG_SECTION}_TYPE=\$1"; }
option() { eval "CONFIG_${CONFIG_SECTION}_$1=\$2"; }
list() {
	local n
	eval "n=\${CONFIG_${CONFIG_SECTION}_$1_LENGTH:-0}"
	[ "$n" = 0 ] && CONFIG_LIST_STATE="$CONFIG_LIST_STATE ${CONFIG_SECTION}_$1"
	n=$((n + 1))
	eval "CONFIG_${CONFIG_SECTION}_$1_ITEM$n=\$2; CONFIG_${CONFIG_SECTION}_$1_LENGTH=$n"
}
# Loading again starts the lists afresh, as OpenWrt's uci_load does.
config_load() {
	local list
	for list in $CONFIG_LIST_STATE; do eval "CONFIG_${list}_LENGTH=0"; done
	CONFIG_LIST_STATE=""
	eval "$(/sbin/uci -q export "$1")"
}
# config_get VARIABLE SECTION OPTION [DEFAULT]
config_get() {
	local __get_value
	eval "__get_value=\${CONFIG_$2_$3-}"
	[ -n "$__get_value" ] || __get_value="$4"
	eval "$1=\$__get_value"
}
# config_get_bool VARIABLE SECTION OPTION [DEFAULT]: 1 or 0.
config_get_bool() {
	local __bool_value
	config_get __bool_value "$2" "$3" "$4"
	case "$__bool_value" in
		1|on|true|yes|enabled) __bool_value=1 ;;
		0|off|false|no|disabled) __bool_value=0 ;;
		*) __bool_value="$4" ;;
	esac
	eval "$1=\$__bool_value"
}
# config_list_foreach SECTION OPTION FUNCTION [ARGUMENTS…]: FUNCTION ITEM ARGUMENTS… per item.
config_list_foreach() {
	local section="$1" option="$2" function="$3" length index item
	shift 3
	eval "length=\${CONFIG_${section}_${option}_LENGTH:-0}"
	index=1
	while [ "$index" -le "$length" ]; do
		eval "item=\$CONFIG_${section}_${option}_ITEM$index"
		"$function" "$item" "$@"
		index=$((index + 1))
	done
}
