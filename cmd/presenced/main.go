// Command presenced tells an app's admins how many users are online right
// now, exactly, across many nodes. See the README.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "presenced: %v\n", err)
		os.Exit(exitCode(err))
	}
}
