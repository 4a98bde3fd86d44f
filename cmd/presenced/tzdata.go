package main

// The IANA time zone database is built in (about 450 KB), so that
// STATS_TIMEZONE works in a container or on a host without
// /usr/share/zoneinfo.
import _ "time/tzdata"
