// Linux headers that Glibc's Swift module map does not export.
#pragma once
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <signal.h>
#include <linux/filter.h>
