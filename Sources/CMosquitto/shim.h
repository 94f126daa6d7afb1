#ifndef KILNTALLY_CMOSQUITTO_SHIM_H
#define KILNTALLY_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#endif
