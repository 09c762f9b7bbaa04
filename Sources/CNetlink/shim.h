// libnl-3 core and generic netlink, plus the kernel's netlink UAPI headers that LANrage builds
// messages from: WireGuard's generic netlink family and rtnetlink links, addresses and routes.
#pragma once
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/errno.h>
#include <netlink/socket.h>
#include <netlink/genl/genl.h>
#include <netlink/genl/ctrl.h>
#include <linux/wireguard.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
