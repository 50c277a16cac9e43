// Command hello is the end-to-end node's ordinary (runc) container: it prints one line with the
// pod's name and then waits until it is told to stop.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	fmt.Printf("hello from an ordinary container in pod %s\n", os.Getenv("POD_NAME"))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
