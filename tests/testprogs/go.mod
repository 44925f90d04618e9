module goprobe.test/testprogs

go 1.21
