/*
 * device.h: the identity of the machine a kernel runs on, as the database
 * records it. Winners are looked up by this identity, so two machines with
 * the same CPU model, core count and compiler share their tuning.
 */
#ifndef MTA_DEVICE_H
#define MTA_DEVICE_H

#include "db.h"

/*
 * Fill d for this machine's CPU: name from /proc/cpuinfo, arch from uname
 * and the widest vector extension, cores online, the C compiler's identity.
 * The strings live in static storage (the values never change in a process).
 */
int mta_device_cpu(struct mta_db_device *d);

#endif
